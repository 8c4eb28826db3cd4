"""The emulator's pure-Python H.264 / MP4 writer makes files that a real decoder (FFmpeg, via PyAV) plays exactly."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from fractions import Fraction

import av
import pytest
from PIL import Image

from shim.emulator.h264 import bt601_ycbcr, encode_solid, escape, pick_level, se, ue
from shim.emulator.images import PALETTE, pick_colour
from shim.emulator.mp4 import write_mp4
from shim.emulator.videos import FPS, encode_mp4, render_last_frame, render_mp4

RED = PALETTE[0]


@dataclass
class Decoded:
    """What a strict decode of an MP4 found."""

    format_name: str
    codec: str
    profile: str | None
    level: int
    width: int
    height: int
    declared_frames: int
    packets: int
    keyframes: list[int]
    duration: Fraction
    container_duration: int | None
    rate: Fraction | None
    frames: list[av.VideoFrame]


def decode(data: bytes, *, limit: int | None = None) -> Decoded:
    """Demux and decode `data` with FFmpeg's error detection set to raise on any bitstream damage."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {"err_detect": "crccheck+bitstream+buffer+explode"}
        packets = [packet for packet in container.demux(stream) if packet.size]
        frames: list[av.VideoFrame] = []
        for packet in packets[:limit]:
            frames.extend(stream.codec_context.decode(packet))
        if limit is None:
            frames.extend(stream.codec_context.decode(None))
        assert stream.duration is not None and stream.time_base is not None
        return Decoded(
            format_name=container.format.name,
            codec=stream.codec_context.name,
            profile=stream.codec_context.profile,
            level=stream.codec_context.level,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            declared_frames=stream.frames,
            packets=len(packets),
            keyframes=[i for i, packet in enumerate(packets) if packet.is_keyframe],
            duration=stream.duration * stream.time_base,
            container_duration=container.duration,
            rate=stream.average_rate,
            frames=frames,
        )


def assert_solid(frame: av.VideoFrame, rgb: tuple[int, int, int]) -> None:
    """Every Y, Cb and Cr sample is the colour's BT.601 value, and RGB conversion gives the colour back."""
    assert frame.format.name == "yuv420p"
    expected = bt601_ycbcr(rgb)
    for plane, value in zip(frame.planes, expected, strict=True):
        data = bytes(plane)
        rows = [data[row * plane.line_size : row * plane.line_size + plane.width] for row in range(plane.height)]
        assert set(rows) == {bytes([value]) * plane.width}
    converted = frame.reformat(format="rgb24")
    pixels = bytes(converted.planes[0])
    stride = converted.planes[0].line_size
    for x, y in ((0, 0), (frame.width - 1, frame.height - 1), (frame.width // 2, frame.height // 2)):
        offset = y * stride + 3 * x
        assert all(abs(a - b) <= 2 for a, b in zip(pixels[offset : offset + 3], rgb, strict=True))


@pytest.mark.parametrize(
    ("width", "height", "seconds", "level"),
    [
        pytest.param(16, 16, 1, 10, id="one-macroblock"),
        pytest.param(18, 2, 1, 10, id="cropped-both-ways"),
        pytest.param(64, 16, 1, 10, id="one-row"),
        pytest.param(16, 64, 1, 10, id="one-column"),
        pytest.param(48, 34, 2, 10, id="small"),
        pytest.param(1920, 1080, 4, 40, id="1080p"),
    ],
)
def test_clip_decodes_to_exact_size_frames_and_colour(width: int, height: int, seconds: int, level: int) -> None:
    """An encoded clip is an MP4 holding H.264 of that exact size, seconds x 24 frames, every one the colour."""
    data = encode_mp4(width, height, seconds, RED)
    found = decode(data)
    assert "mp4" in found.format_name
    assert (found.codec, found.profile, found.level) == ("h264", "Constrained Baseline", level)
    assert (found.width, found.height) == (width, height)
    frames = seconds * FPS
    assert found.declared_frames == found.packets == len(found.frames) == frames
    assert found.keyframes == [0]
    assert found.duration == seconds
    assert found.container_duration == seconds * 1_000_000
    assert found.rate == FPS
    assert {(frame.width, frame.height) for frame in found.frames} == {(width, height)}
    assert_solid(found.frames[0], RED)
    assert_solid(found.frames[-1], RED)


def test_4k_clip_is_small_and_decodes() -> None:
    """A 15 s 4K clip stays a few tens of kB (one compact I frame, then skipped P frames) and decodes exactly."""
    data = render_mp4(3840, 2160, 15, "seed")
    assert data == render_mp4(3840, 2160, 15, "seed")  # deterministic (and cached)
    assert len(data) < 64_000
    found = decode(data, limit=1)
    assert (found.width, found.height, found.level) == (3840, 2160, 51)
    assert found.declared_frames == found.packets == 15 * FPS
    assert found.duration == 15
    [frame] = found.frames
    assert_solid(frame, pick_colour("seed"))


def test_portrait_clip_keeps_orientation() -> None:
    """A portrait size is encoded portrait: width and height are never swapped."""
    found = decode(encode_mp4(34, 64, 1, RED))
    assert (found.width, found.height) == (34, 64)
    assert_solid(found.frames[0], RED)


def test_corrupt_macroblock_data_is_caught_by_the_decoder() -> None:
    """A damaged slice makes the strict decode raise, so the checks above would catch a wrong bitstream."""
    stream = encode_solid(64, 48, RED, frames=3, fps=FPS)
    data = bytearray(write_mp4(stream))
    start = bytes(data).index(stream.frames[0])
    data[start + len(stream.frames[0]) - 2] = 0x00
    with pytest.raises(av.error.InvalidDataError):
        decode(bytes(data))


def test_moov_comes_first_and_points_into_mdat() -> None:
    """Top-level boxes are ftyp, moov, mdat in that order, and stco points at the first sample in mdat."""
    stream = encode_solid(32, 32, RED, frames=5, fps=FPS)
    data = write_mp4(stream)
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        boxes.append((kind, offset, size))
        offset += size
    assert [kind for kind, _, _ in boxes] == [b"ftyp", b"moov", b"mdat"]
    assert offset == len(data)
    stco = data.index(b"stco")
    (chunk_offset,) = struct.unpack_from(">I", data, stco + 12)
    assert chunk_offset == boxes[2][1] + 8
    first = stream.frames[0]
    assert data[chunk_offset : chunk_offset + 4 + len(first)] == struct.pack(">I", len(first)) + first


def test_last_frame_png_is_the_clip_colour() -> None:
    """The last-frame PNG has the clip's size and the colour its frames decode to."""
    png = render_last_frame(40, 24, "seed")
    with Image.open(io.BytesIO(png)) as image:
        assert (image.format, image.size, image.mode) == ("PNG", (40, 24), "RGB")
        colour = image.getpixel((39, 23))
    assert isinstance(colour, tuple)
    assert_solid(decode(render_mp4(40, 24, 4, "seed")).frames[-1], (colour[0], colour[1], colour[2]))


@pytest.mark.parametrize(("width", "height"), [(853, 480), (854, 481), (0, 16), (16, -2)])
def test_odd_or_empty_sizes_are_refused(width: int, height: int) -> None:
    """4:2:0 chroma needs even dimensions; anything else is a ValueError, not a wrong file."""
    with pytest.raises(ValueError, match="positive and even"):
        encode_solid(width, height, RED, frames=1, fps=FPS)


def test_exp_golomb_codes_match_the_standard() -> None:
    """ue(v) and se(v) give the bit strings of H.264 tables 9-2 and 9-3."""
    assert [ue(v) for v in (0, 1, 2, 3, 7, 8, 25)] == ["1", "010", "011", "00100", "0001000", "0001001", "000011010"]
    assert [se(v) for v in (0, 1, -1, 2, -2, 3)] == ["1", "010", "011", "00100", "00101", "00110"]


def test_emulation_prevention() -> None:
    """Two zero bytes followed by 00-03 get a 03 inserted; other bytes pass unchanged."""
    assert escape(b"\x00\x00\x00\x00\x00") == b"\x00\x00\x03\x00\x00\x03\x00"
    assert escape(b"\x12\x00\x00\x01\x00\x00\x02\x00\x00\x03") == (
        b"\x12\x00\x00\x03\x01\x00\x00\x03\x02\x00\x00\x03\x03"
    )
    assert escape(b"\x00\x00\x04\x00\x01\x00") == b"\x00\x00\x04\x00\x01\x00"


def test_levels_follow_table_a1() -> None:
    """The level is the lowest whose frame size and macroblock rate admit the clip."""
    assert pick_level(1, 1, 24) == 10
    assert pick_level(54, 30, 24) == 30  # 854x480
    assert pick_level(80, 45, 24) == 31  # 1280x720
    assert pick_level(120, 68, 24) == 40  # 1920x1080
    assert pick_level(240, 135, 24) == 51  # 3840x2160
    with pytest.raises(ValueError, match="exceeds every H.264 level"):
        pick_level(1000, 1000, 24)


def test_bt601_limited_range() -> None:
    """Black, white and a primary map to the limited-range BT.601 values the SPS signals."""
    assert bt601_ycbcr((0, 0, 0)) == (16, 128, 128)
    assert bt601_ycbcr((255, 255, 255)) == (235, 128, 128)
    assert bt601_ycbcr((255, 0, 0)) == (81, 90, 240)
