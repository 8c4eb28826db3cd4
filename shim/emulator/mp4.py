"""An MP4 (ISO BMFF) writer for one H.264 video track, in pure Python: `write_mp4(stream) -> bytes`.

The file, `moov` first so a player (or a Range reader) knows the layout before the media data:

    ftyp  isom, minor 512; compatible isom iso2 avc1 mp41
    moov
      mvhd              timescale 1000, duration in ms, next track 2
      trak
        tkhd            track 1, enabled + in movie, width x height (16.16)
        mdia
          mdhd          timescale = fps, duration = frames, language und
          hdlr          vide "VideoHandler"
          minf
            vmhd
            dinf/dref   one self-contained "url " entry
            stbl
              stsd      avc1 (width x height, depth 24) > avcC (profile, level, 4-byte lengths, SPS, PPS)
              stts      every sample lasts 1 tick (1/fps s)
              stss      sample 1 is the only sync sample (the IDR)
              stsc      all samples in one chunk
              stsz      each sample's size
              stco      the chunk's offset: the first byte inside mdat
    mdat  one sample per frame: a 4-byte big-endian length, then the NAL unit
"""

from __future__ import annotations

import struct

from .h264 import H264Stream

MOVIE_TIMESCALE = 1000
NAL_LENGTH_SIZE = 4
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_LANGUAGE_UND = 0x55C4  # "und" packed as three 5-bit letters


def box(kind: bytes, *payload: bytes) -> bytes:
    """One ISO BMFF box: 32-bit size, 4-byte type, payload."""
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    """A box with a version byte and 24 bits of flags."""
    return box(kind, struct.pack(">I", version << 24 | flags), *payload)


def write_mp4(stream: H264Stream) -> bytes:
    """The whole MP4 file of `stream`, one sample per frame at `stream.fps`."""
    samples = [struct.pack(">I", len(nal)) + nal for nal in stream.frames]
    ftyp = box(b"ftyp", b"isom", struct.pack(">I", 512), b"isom", b"iso2", b"avc1", b"mp41")
    # The chunk offset is a fixed-width field, so the moov size does not depend on its value.
    probe = _moov(stream, samples, chunk_offset=0)
    offset = len(ftyp) + len(probe) + 8
    media = b"".join(samples)
    if offset + len(media) >= 1 << 32:
        raise ValueError("clip too large for 32-bit box sizes")
    return ftyp + _moov(stream, samples, chunk_offset=offset) + box(b"mdat", media)


def _moov(stream: H264Stream, samples: list[bytes], *, chunk_offset: int) -> bytes:
    frames = len(samples)
    movie_duration = round(frames * MOVIE_TIMESCALE / stream.fps)
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, MOVIE_TIMESCALE, movie_duration),
        struct.pack(">IH10x", 0x10000, 0x100),  # rate 1.0, volume 1.0, reserved
        _MATRIX,
        bytes(24),  # pre_defined
        struct.pack(">I", 2),  # next_track_ID
    )
    tkhd = full_box(
        b"tkhd",
        0,
        3,  # track_enabled | track_in_movie
        struct.pack(">IIIII", 0, 0, 1, 0, movie_duration),  # times, track_ID 1, reserved, duration
        bytes(8),
        struct.pack(">hhH2x", 0, 0, 0),  # layer, alternate_group, volume 0 (video)
        _MATRIX,
        struct.pack(">II", stream.width << 16, stream.height << 16),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, stream.fps, frames, _LANGUAGE_UND, 0))
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\x00")
    vmhd = full_box(b"vmhd", 0, 1, bytes(8))  # graphicsmode copy, opcolor 0
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), _avc1(stream)),
        full_box(b"stts", 0, 0, struct.pack(">III", 1, frames, 1)),
        full_box(b"stss", 0, 0, struct.pack(">II", 1, 1)),
        full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, frames, 1)),
        full_box(b"stsz", 0, 0, struct.pack(f">II{frames}I", 0, frames, *map(len, samples))),
        full_box(b"stco", 0, 0, struct.pack(">II", 1, chunk_offset)),
    )
    minf = box(b"minf", vmhd, dinf, stbl)
    return box(b"moov", mvhd, box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, minf)))


def _avc1(stream: H264Stream) -> bytes:
    avcc = box(
        b"avcC",
        struct.pack(">BBBB", 1, stream.profile, stream.constraints, stream.level),
        struct.pack(">BB", 0xFC | (NAL_LENGTH_SIZE - 1), 0xE0 | 1),  # length size, one SPS
        struct.pack(">H", len(stream.sps)),
        stream.sps,
        struct.pack(">BH", 1, len(stream.pps)),  # one PPS
        stream.pps,
    )
    name = b"shim emulator H.264"
    return box(
        b"avc1",
        bytes(6),  # reserved
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),  # pre_defined, reserved
        struct.pack(">HHIIIH", stream.width, stream.height, 0x480000, 0x480000, 0, 1),  # 72 dpi, 1 frame
        bytes([len(name)]) + name.ljust(31, b"\x00"),  # compressorname
        struct.pack(">Hh", 0x18, -1),  # depth 24, pre_defined -1
        avcc,
    )
