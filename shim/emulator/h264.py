"""A tiny H.264 encoder for solid-colour clips: Baseline-profile NAL units in pure Python, no dependency.

`encode_solid(width, height, rgb, frames=..., fps=...)` returns an `H264Stream`: SPS, PPS and one NAL unit
(header + escaped RBSP, no start code) per frame, ready for an MP4 `avcC` box and samples:

    frame 0: IDR slice (I, nal type 5)            frames 1..n-1: P slices (nal type 1)
    +-----+-----+-----+-- --+                     +----------------------------------+
    | PCM |  H  |  H  | ... |  row 0              | mb_skip_run = every macroblock:  |
    +-----+-----+-----+-- --+                     | an exact copy of the frame before |
    |  V  |  V  |  V  | ... |  rows 1..           +----------------------------------+
    +-----+-----+-----+-- --+
    PCM: the top-left macroblock's samples verbatim (I_PCM, the colour in BT.601 limited-range YCbCr)
    H / V: Intra 16x16 horizontal / vertical prediction with no residual, so each macroblock copies its
           neighbour exactly; chroma uses DC prediction. Deblocking is off: every pixel is the PCM colour.

A 4K frame is therefore a few tens of kB, built from a handful of repeated bit patterns. The picture is the
macroblock grid cropped to `width` x `height` (SPS frame cropping), so both must be even (4:2:0 chroma).
The SPS carries a VUI: square pixels, BT.601 colour, the frame rate, and no reordering.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Colour = tuple[int, int, int]

PROFILE_BASELINE = 66
CONSTRAINTS = 0xC0  # constraint_set0 + constraint_set1: Constrained Baseline
LOG2_MAX_FRAME_NUM = 16
# (level_idc, MaxFS in macroblocks, MaxMBPS), Table A-1; level 1b is skipped.
LEVELS: tuple[tuple[int, int, int], ...] = (
    (10, 99, 1485),
    (11, 396, 3000),
    (12, 396, 6000),
    (13, 396, 11880),
    (20, 396, 11880),
    (21, 792, 19800),
    (22, 1620, 20250),
    (30, 1620, 40500),
    (31, 3600, 108000),
    (32, 5120, 216000),
    (40, 8192, 245760),
    (42, 8704, 522240),
    (50, 22080, 589824),
    (51, 36864, 983040),
    (52, 36864, 2073600),
    (60, 139264, 4177920),
    (61, 139264, 8355840),
    (62, 139264, 16711680),
)
NAL_SPS, NAL_PPS, NAL_IDR, NAL_SLICE = 7, 8, 5, 1
_EMULATED = re.compile(b"\x00\x00(?=[\x00-\x03])")


@dataclass(frozen=True, slots=True)
class H264Stream:
    """An encoded clip: parameter sets and one NAL unit per frame (frame 0 is the only IDR)."""

    width: int
    height: int
    fps: int
    sps: bytes
    pps: bytes
    frames: tuple[bytes, ...]

    @property
    def profile(self) -> int:
        return self.sps[1]

    @property
    def constraints(self) -> int:
        return self.sps[2]

    @property
    def level(self) -> int:
        return self.sps[3]


def ue(value: int) -> str:
    """Exp-Golomb code of an unsigned value, as a bit string."""
    code = bin(value + 1)[2:]
    return "0" * (len(code) - 1) + code


def se(value: int) -> str:
    """Exp-Golomb code of a signed value, as a bit string."""
    return ue(2 * value - 1 if value > 0 else -2 * value)


def u(bits: int, value: int) -> str:
    """`value` as a fixed-width bit string."""
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{value} does not fit in {bits} bits")
    return format(value, f"0{bits}b")


def bt601_ycbcr(rgb: Colour) -> Colour:
    """Limited-range BT.601 YCbCr of an 8-bit RGB colour (what the SPS signals: matrix 6)."""
    r, g, b = rgb
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return round(y), round(cb), round(cr)


def pick_level(mbs_wide: int, mbs_high: int, fps: int) -> int:
    """The lowest level whose frame size, macroblock rate and frame dimensions admit the clip."""
    frame = mbs_wide * mbs_high
    for level, max_fs, max_mbps in LEVELS:
        side = (8 * max_fs) ** 0.5
        if frame <= max_fs and frame * fps <= max_mbps and mbs_wide <= side and mbs_high <= side:
            return level
    raise ValueError(f"{mbs_wide * 16}x{mbs_high * 16} at {fps} fps exceeds every H.264 level")


def encode_solid(width: int, height: int, rgb: Colour, *, frames: int, fps: int) -> H264Stream:
    """Encode `frames` frames of one solid `rgb` colour at exactly `width` x `height` pixels."""
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"width and height must be positive and even, got {width}x{height}")
    if frames < 1 or fps < 1:
        raise ValueError("frames and fps must be at least 1")
    mbs_wide, mbs_high = -(-width // 16), -(-height // 16)
    level = pick_level(mbs_wide, mbs_high, fps)
    sps = _nal(3, NAL_SPS, _sps_bits(width, height, mbs_wide, mbs_high, level, fps))
    pps = _nal(3, NAL_PPS, _pps_bits())
    idr = _nal(3, NAL_IDR, _idr_bits(mbs_wide, mbs_high, bt601_ycbcr(rgb)))
    skipped = [_nal(2, NAL_SLICE, _p_skip_bits(index, mbs_wide * mbs_high)) for index in range(1, frames)]
    return H264Stream(width, height, fps, sps, pps, (idr, *skipped))


def _nal(ref_idc: int, nal_type: int, rbsp_bits: str) -> bytes:
    """One NAL unit: header byte, then the RBSP with its trailing bits and emulation prevention."""
    bits = rbsp_bits + "1"
    bits += "0" * (-len(bits) % 8)
    rbsp = int(bits, 2).to_bytes(len(bits) // 8, "big")
    return bytes([ref_idc << 5 | nal_type]) + escape(rbsp)


def escape(rbsp: bytes) -> bytes:
    """Insert emulation prevention bytes: every 00 00 followed by 00-03 becomes 00 00 03 (7.4.1)."""
    return _EMULATED.sub(b"\x00\x00\x03", rbsp)


def _sps_bits(width: int, height: int, mbs_wide: int, mbs_high: int, level: int, fps: int) -> str:
    crop_right, crop_bottom = (mbs_wide * 16 - width) // 2, (mbs_high * 16 - height) // 2
    cropping = "0"
    if crop_right or crop_bottom:
        cropping = "1" + ue(0) + ue(crop_right) + ue(0) + ue(crop_bottom)
    vui = "".join(
        (
            "1" + u(8, 1),  # aspect_ratio_info: 1:1 (square pixels)
            "0",  # no overscan info
            "1" + u(3, 5) + "0" + "1" + u(8, 6) + u(8, 6) + u(8, 6),  # limited range, SMPTE 170M (BT.601)
            "0",  # no chroma location
            "1" + u(32, 1) + u(32, 2 * fps) + "1",  # timing: a tick is a field, fixed frame rate
            "0" + "0",  # no NAL / VCL HRD
            "0",  # no pic_struct
            "1" + "1" + ue(0) + ue(0) + ue(15) + ue(15) + ue(0) + ue(1),  # no reordering, one frame buffered
        )
    )
    return "".join(
        (
            u(8, PROFILE_BASELINE),
            u(8, CONSTRAINTS),
            u(8, level),
            ue(0),  # seq_parameter_set_id
            ue(LOG2_MAX_FRAME_NUM - 4),
            ue(2),  # pic_order_cnt_type 2: output order is decoding order
            ue(1),  # max_num_ref_frames
            "0",  # gaps_in_frame_num_value_allowed_flag
            ue(mbs_wide - 1),
            ue(mbs_high - 1),
            "1",  # frame_mbs_only_flag
            "1",  # direct_8x8_inference_flag
            cropping,
            "1" + vui,
        )
    )


def _pps_bits() -> str:
    return "".join(
        (
            ue(0),  # pic_parameter_set_id
            ue(0),  # seq_parameter_set_id
            "0",  # entropy_coding_mode_flag: CAVLC
            "0",  # bottom_field_pic_order_in_frame_present_flag
            ue(0),  # num_slice_groups_minus1
            ue(0) + ue(0),  # num_ref_idx_l0 / l1_default_active_minus1
            "0" + u(2, 0),  # no weighted prediction
            se(0) + se(0) + se(0),  # pic_init_qp / qs_minus26, chroma_qp_index_offset
            "1",  # deblocking_filter_control_present_flag (the slices switch it off)
            "0",  # constrained_intra_pred_flag
            "0",  # redundant_pic_cnt_present_flag
        )
    )


def _slice_tail() -> str:
    """slice_qp_delta 0, disable_deblocking_filter_idc 1."""
    return se(0) + ue(1)


def _idr_bits(mbs_wide: int, mbs_high: int, ycbcr: Colour) -> str:
    header = "".join(
        (
            ue(0),  # first_mb_in_slice
            ue(7),  # slice_type: I (every slice of the picture)
            ue(0),  # pic_parameter_set_id
            u(LOG2_MAX_FRAME_NUM, 0),  # frame_num
            ue(0),  # idr_pic_id
            "0" + "0",  # dec_ref_pic_marking: no_output_of_prior_pics, long_term_reference
            _slice_tail(),
        )
    )
    y, cb, cr = ycbcr
    pcm = ue(25)  # mb_type I_PCM
    pcm += "0" * (-(len(header) + len(pcm)) % 8)  # pcm_alignment_zero_bit
    pcm += u(8, y) * 256 + u(8, cb) * 64 + u(8, cr) * 64
    # An Intra 16x16 macroblock with no residual: mb_type (1 + prediction mode), intra_chroma_pred_mode DC,
    # mb_qp_delta 0, then the always-present Intra16x16DCLevel block with no coefficient. Its coeff_token
    # depends on nC (9.2.1): 16 next to the I_PCM macroblock ("000011", Table 9-5, 8 <= nC), else 0 ("1").
    vertical, horizontal = ue(1) + ue(0) + se(0), ue(2) + ue(0) + se(0)
    row0 = pcm
    if mbs_wide > 1:
        row0 += horizontal + "000011" + (horizontal + "1") * (mbs_wide - 2)
    rows = row0
    if mbs_high > 1:
        rows += vertical + "000011" + (vertical + "1") * (mbs_wide - 1)
        rows += (vertical + "1") * (mbs_wide * (mbs_high - 2))
    return header + rows


def _p_skip_bits(frame_num: int, macroblocks: int) -> str:
    return "".join(
        (
            ue(0),  # first_mb_in_slice
            ue(0),  # slice_type: P
            ue(0),  # pic_parameter_set_id
            u(LOG2_MAX_FRAME_NUM, frame_num % (1 << LOG2_MAX_FRAME_NUM)),
            "0",  # num_ref_idx_active_override_flag
            "0",  # ref_pic_list_modification_flag_l0
            "0",  # adaptive_ref_pic_marking_mode_flag: sliding window
            _slice_tail(),
            ue(macroblocks),  # mb_skip_run: every macroblock is P_Skip (zero motion, a copy)
        )
    )
