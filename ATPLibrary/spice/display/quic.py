"""SPICE QUIC image decoding (image type QUIC), a pure-Python re-implementation.

QUIC (SPICE's SFALIC-derived lossless codec) codes each colour channel as the Golomb-Rice coded,
sign-folded difference between a pixel and its prediction (row 0: the left neighbour; other rows:
the mean of the left and upper neighbours).  The Golomb parameter comes from an adaptive model: the
previous pixel's folded difference picks a bucket (buckets grow 1, 2, 4, ... values wide), and each
bucket remembers which parameter would have coded its values shortest so far.  The model is updated
only at pseudo-random pixels (a fixed 256-entry table of the format drives the spacing; the spacing
mask widens every 2048 pixels).  Where the row above repeats and the two previous pixels are equal,
a run-length code (an adaptive "MELCODE") replaces per-pixel codes.  The bit stream is 32-bit
little-endian words read most-significant bit first; the header is five such words:
``"QUIC"``, version 0, type (1 gray, 2 RGB16, 3 RGB24, 4 RGB32, 5 RGBA), width, height.

Every step is bounded by the pixel count and the input length; bad input raises SpiceProtocolError.
"""

from __future__ import annotations

import struct

from ATPLibrary.errors import SpiceProtocolError
from ATPLibrary.spice.display.pixels import Pixels, check_size

QUIC_MAGIC = 0x43495551
QUIC_VERSION = 0
TYPE_GRAY, TYPE_RGB16, TYPE_RGB24, TYPE_RGB32, TYPE_RGBA = 1, 2, 3, 4, 5
TYPE_NAMES = {TYPE_GRAY: "GRAY", TYPE_RGB16: "RGB16", TYPE_RGB24: "RGB24", TYPE_RGB32: "RGB32", TYPE_RGBA: "RGBA"}

_MAX_CODE_LEN = 26  # longest codeword the format allows (DEFmaxclen)
_WM_MAX = 6  # the wait mask stops widening after this many steps
_WM_NEXT = 2048  # pixels between wait-mask steps
#: Model-halving thresholds by wait-mask step (the format's table for its default evolution mode).
_WM_TRIGGER = (110, 550, 900, 800, 550, 400, 350, 250, 140, 160, 140)
#: MELCODE run-length states: the "expected run" exponent per state.
_MELC_J = (0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15)
_MELC_STATES = len(_MELC_J)

#: The format's fixed pseudo-random table that spaces model updates (a constant of the QUIC format).
_CHAOS = (
    0x02C57542,
    0x35427717,
    0x2F5A2153,
    0x9244F155,
    0x7BD26D07,
    0x354C6052,
    0x57329B28,
    0x2993868E,
    0x6CD8808C,
    0x147B46E0,
    0x99DB66AF,
    0xE32B4CAC,
    0x1B671264,
    0x9D433486,
    0x62A4C192,
    0x06089A4B,
    0x9E3DCE44,
    0xDAABEE13,
    0x222425EA,
    0xA46F331D,
    0xCD589250,
    0x8BB81D7F,
    0xC8B736B9,
    0x35948D33,
    0xD7AC7FD0,
    0x5FBE2803,
    0x2CFBC105,
    0x013DBC4E,
    0x7A37820F,
    0x39F88E9E,
    0xEDD58794,
    0xC5076689,
    0xFCADA5A4,
    0x64C2F46D,
    0xB3BA3243,
    0x8974B4F9,
    0x5A05AEBD,
    0x20AFCD00,
    0x39E2B008,
    0x88A18A45,
    0x600BDE29,
    0xF3971ACE,
    0xF37B0A6B,
    0x7041495B,
    0x70B707AB,
    0x06BEFFBB,
    0x4206051F,
    0xE13C4EE3,
    0xC1A78327,
    0x91AA067C,
    0x8295F72A,
    0x732917A6,
    0x1D871B4D,
    0x4048F136,
    0xF1840E7E,
    0x6A6048C1,
    0x696CB71A,
    0x7FF501C3,
    0x0FC6310B,
    0x57E0F83D,
    0x8CC26E74,
    0x11A525A2,
    0x946934C7,
    0x7CD888F0,
    0x8F9D8604,
    0x4F86E73B,
    0x04520316,
    0xDEEEA20C,
    0xF1DEF496,
    0x67687288,
    0xF540C5B2,
    0x22401484,
    0x3478658A,
    0xC2385746,
    0x01979C2C,
    0x5DAD73C8,
    0x0321F58B,
    0xF0FEDBEE,
    0x92826DDF,
    0x284BEC73,
    0x5B1A1975,
    0x03DF1E11,
    0x20963E01,
    0xA17CF12B,
    0x740D776E,
    0xA7A6BF3C,
    0x01B5CCE4,
    0x1118AA76,
    0xFC6FAC0A,
    0xCE927E9B,
    0x00BF2567,
    0x806F216C,
    0xBCA69056,
    0x795BD3E9,
    0xC9DC4557,
    0x8929B6C2,
    0x789D52EC,
    0x3F3FBF40,
    0xB9197368,
    0xA38C15B5,
    0xC3B44FA8,
    0xCA8333B0,
    0xB7E8D590,
    0xBE807FEB,
    0xBF5F8360,
    0xD99E2F5C,
    0x372928E1,
    0x7C757C4C,
    0x0DB5B154,
    0xC01EDE02,
    0x1FC86E78,
    0x1F3985BE,
    0xB4805C77,
    0x00C880FA,
    0x974C1B12,
    0x35AB0214,
    0xB2DC840D,
    0x5B00AE37,
    0xD313B026,
    0xB260969D,
    0x7F4C8879,
    0x1734C4D3,
    0x49068631,
    0xB9F6A021,
    0x6B863E6F,
    0xCEE5DEBF,
    0x29F8C9FB,
    0x53DD6880,
    0x72B61223,
    0x1F67A9FD,
    0x0A0F6993,
    0x13E59119,
    0x11CCA12E,
    0xFE6B6766,
    0x16B6EFFC,
    0x97918FC4,
    0xC2B8A563,
    0x94F2F741,
    0x0BFA8C9A,
    0xD1537AE8,
    0xC1DA349C,
    0x873C60CA,
    0x95005B85,
    0x9B5C080E,
    0xBC8ABBD9,
    0xE1EAB1D2,
    0x6DAC9070,
    0x4EA9EBF1,
    0xE0CF30D4,
    0x1EF5BD7B,
    0xD161043E,
    0x5D2FA2E2,
    0xFF5D3CAE,
    0x86ED9F87,
    0x2AA1DAA1,
    0xBD731A34,
    0x9E8F4B22,
    0xB1C2C67A,
    0xC21758C9,
    0xA182215D,
    0xCCB01948,
    0x8D168DF7,
    0x04238CFE,
    0x368C3DBC,
    0x0AEADCA5,
    0xBAD21C24,
    0x0A71FEE5,
    0x9FC5D872,
    0x54C152C6,
    0xFC329483,
    0x6783384A,
    0xEDDB3E1C,
    0x65F90E30,
    0x884AD098,
    0xCE81675A,
    0x4B372F7D,
    0x68BF9A39,
    0x43445F1E,
    0x40F8D8CB,
    0x90D5ACB6,
    0x4CD07282,
    0x349EEB06,
    0x0C9D5332,
    0x520B24EF,
    0x80020447,
    0x67976491,
    0x2F931CA3,
    0xFE9B0535,
    0xFCD30220,
    0x61A9E6CC,
    0xA487D8D7,
    0x3F7C5DD1,
    0x7D0127C5,
    0x48F51D15,
    0x60DEA871,
    0xC9A91CB7,
    0x58B53BB3,
    0x9D5E0B2D,
    0x624A78B4,
    0x30DBEE1B,
    0x9BDF22E7,
    0x1DF5C299,
    0x2D5643A7,
    0xF4DD35FF,
    0x03CA8FD6,
    0x53B47ED8,
    0x6F2C19AA,
    0xFEB0C1F4,
    0x49E54438,
    0x2F2577E6,
    0xBF876969,
    0x72440EA9,
    0xFA0BAFB8,
    0x74F5B3A0,
    0x7DD357CD,
    0x89CE1358,
    0x6EF2CDDA,
    0x1E7767F3,
    0xA6BE9FDB,
    0x4F5F88F8,
    0xBA994A3A,
    0x08CA6B65,
    0xE0893818,
    0x9E00A16A,
    0xF42BFC8F,
    0x9972EEDC,
    0x749C8B51,
    0x32C05F5E,
    0xD706805F,
    0x6BFBB7CF,
    0xD9210A10,
    0x31A1DB97,
    0x923A9559,
    0x37A7A1F6,
    0x059F8861,
    0xCA493E62,
    0x65157E81,
    0x8F6467DD,
    0xAB85FF9F,
    0x9331AFF2,
    0x8616B9F5,
    0xEDBD5695,
    0xEE7E29B1,
    0x313AC44F,
    0xB903112F,
    0x432EF649,
    0xDC0A36C0,
    0x61CF2BBA,
    0x81474925,
    0xA8B6C7AD,
    0xEE5931DE,
    0xB2F8158D,
    0x59FB7409,
    0x2E3DFAED,
    0x9AF25A3F,
    0xE1FED4D5,
)


class _Family:
    """Golomb code tables for one bit depth (8 or 5 bits per channel)."""

    def __init__(self, bpc: int) -> None:
        self.bpc = bpc
        self.levels = 1 << bpc
        self.n_gr: list[int] = []
        self.ngr_len: list[int] = []
        self.ngr_prefix_mask: list[int] = []
        self.ngr_suffix_mask: list[int] = []
        self.code_len: list[list[int]] = [[0] * bpc for _ in range(256)]
        for code in range(bpc):
            prefix = min(_MAX_CODE_LEN - bpc, (1 << (bpc - code)) - 1)
            alt_words = (1 << bpc) - (prefix << code)
            suffix = (alt_words - 1).bit_length() if alt_words > 1 else 0
            self.n_gr.append(prefix << code)
            self.ngr_len.append(prefix + suffix)
            self.ngr_prefix_mask.append((1 << (32 - prefix)) - 1)
            self.ngr_suffix_mask.append((1 << suffix) - 1)
            for n in range(256):
                self.code_len[n][code] = (n >> code) + code + 1 if n < prefix << code else prefix + suffix
        mask = self.levels - 1
        # folded difference -> difference (mod 2**bpc); entries past the depth stay 0 like the C tables
        self.l2u = [((mask - (s >> 1)) if s & 1 else (s >> 1)) if s < self.levels else 0 for s in range(256)]
        # bucket index for each context value: widths 1, 2, 4, ... with the last one absorbing the rest
        self.bucket_of = [0] * self.levels
        start, size, index = 0, 1, 0
        while True:
            end = start + size - 1
            if end + size * 2 >= self.levels:
                end = self.levels - 1
            for v in range(start, end + 1):
                self.bucket_of[v] = index
            if end >= self.levels - 1:
                break
            start, size, index = end + 1, size * 2, index + 1
        self.n_buckets = index + 1


_FAMILY8 = _Family(8)
_FAMILY5 = _Family(5)


class _Bits:
    """MSB-first reader over the stream's little-endian 32-bit words."""

    __slots__ = ("buf", "limit", "pos")

    def __init__(self, data: bytes, start_bit: int) -> None:
        words = len(data) // 4
        be = struct.pack(f">{words}I", *struct.unpack_from(f"<{words}I", data))
        self.buf = be + bytes(8)
        self.limit = words * 32
        self.pos = start_bit

    def check(self, what: str) -> None:
        if self.pos > self.limit:
            raise SpiceProtocolError(f"{what}: data ends before the image does")


class _State:
    """Per-plane-group adaptive state: model-update spacing and the run-length coder."""

    __slots__ = ("melclen", "melcorder", "melcstate", "seed", "waitcnt", "wm_trigger", "wmidx", "wmileft")

    def __init__(self) -> None:
        self.waitcnt = 0
        self.seed = 0xFF
        self.wmidx = 0
        self.wmileft = _WM_NEXT
        self.wm_trigger = _WM_TRIGGER[0]
        self.melcstate = 0
        self.melclen = _MELC_J[0]
        self.melcorder = 1 << self.melclen

    def tabrand(self) -> int:
        self.seed += 1
        return _CHAOS[self.seed & 0xFF]


class _Plane:
    """One group of channels coded together (RGB: 3 channels sharing a state; gray/alpha: 1)."""

    def __init__(self, channels: int, family: _Family, width: int) -> None:
        self.n = channels
        self.family = family
        self.width = width
        self.state = _State()
        nb = family.n_buckets
        self.best = [[family.bpc - 1] * nb for _ in range(channels)]
        self.counters = [[[0] * family.bpc for _ in range(nb)] for _ in range(channels)]
        # correlate[c][i + 1] is pixel i's folded difference; [0] stands for "pixel -1"
        self.correlate = [[0] * (width + 1) for _ in range(channels)]
        self.prev: list[list[int]] = [[0] * width for _ in range(channels)]
        self.cur: list[list[int]] = [[0] * width for _ in range(channels)]

    # -- model -------------------------------------------------------------------------------
    def _update(self, index: int) -> None:
        fam = self.family
        bpc = fam.bpc
        trigger = self.state.wm_trigger
        code_len = fam.code_len
        bucket_of = fam.bucket_of
        mask = fam.levels - 1
        for c in range(self.n):
            corr = self.correlate[c]
            b = bucket_of[corr[index] & mask]  # context: the folded difference of pixel index-1
            counters = self.counters[c][b]
            lens = code_len[corr[index + 1]]
            best = bpc - 1
            counters[best] += lens[best]
            best_len = counters[best]
            for i in range(bpc - 2, -1, -1):
                counters[i] += lens[i]
                if counters[i] < best_len:
                    best = i
                    best_len = counters[i]
            self.best[c][b] = best
            if best_len > trigger:
                for i in range(bpc):
                    counters[i] >>= 1

    # -- symbols -----------------------------------------------------------------------------
    def _run(self, bits: _Bits) -> int:
        st = self.state
        run = 0
        buf = bits.buf
        while True:
            p = bits.pos
            k = p >> 3
            top = (int.from_bytes(buf[k : k + 2], "big") >> (8 - (p & 7))) & 0xFF
            ones = 8 - (top ^ 0xFF).bit_length()
            for _ in range(ones):
                run += st.melcorder
                if st.melcstate < _MELC_STATES - 1:
                    st.melcstate += 1
                    st.melclen = _MELC_J[st.melcstate]
                    st.melcorder = 1 << st.melclen
            if ones != 8:
                bits.pos = p + ones + 1
                break
            bits.pos = p + 8
            if bits.pos > bits.limit:
                raise SpiceProtocolError("QUIC image: run-length code runs past the data")
        if st.melclen:
            p = bits.pos
            k = p >> 3
            word = (int.from_bytes(buf[k : k + 5], "big") >> (8 - (p & 7))) & 0xFFFFFFFF
            run += word >> (32 - st.melclen)
            bits.pos = p + st.melclen
        if st.melcstate:
            st.melcstate -= 1
            st.melclen = _MELC_J[st.melcstate]
            st.melcorder = 1 << st.melclen
        return run

    # -- rows --------------------------------------------------------------------------------
    def _span(self, i: int, stop: int, bits: _Bits, first_row: bool, run_index: int) -> int:
        """Decode pixels ``i`` up to ``stop`` (exclusive) of every channel; return where it stopped.

        Stops early (returning that index) where the run predictor fires: the row above repeats there and
        the two pixels before are equal (never on the first row, never twice at the same index).
        """
        fam = self.family
        mask = fam.levels - 1
        l2u = fam.l2u
        bucket_of = fam.bucket_of
        prefix_mask = fam.ngr_prefix_mask
        ngr_len = fam.ngr_len
        n_gr = fam.n_gr
        suffix_mask = fam.ngr_suffix_mask
        buf = bits.buf
        p = bits.pos
        chans = [(self.correlate[c], self.best[c], self.cur[c], self.prev[c]) for c in range(self.n)]
        check_runs = not first_row
        if self.n == 3:
            p0, p1, p2 = self.prev
            c0, c1, c2 = self.cur
        while i < stop:
            if check_runs and i > 2 and run_index != i:
                if self.n == 3:
                    if (
                        p0[i - 1] == p0[i]
                        and p1[i - 1] == p1[i]
                        and p2[i - 1] == p2[i]
                        and c0[i - 1] == c0[i - 2]
                        and c1[i - 1] == c1[i - 2]
                        and c2[i - 1] == c2[i - 2]
                    ):
                        break
                elif all(pr[i - 1] == pr[i] for pr in self.prev) and all(cu[i - 1] == cu[i - 2] for cu in self.cur):
                    break
            for corr, best, cur, prev in chans:
                code = best[bucket_of[corr[i] & mask]]
                k = p >> 3
                word = (int.from_bytes(buf[k : k + 5], "big") >> (8 - (p & 7))) & 0xFFFFFFFF
                if word > prefix_mask[code]:
                    zeros = 32 - word.bit_length()
                    length = zeros + 1 + code
                    value = ((zeros << code) | ((word >> (32 - length)) & ((1 << code) - 1))) & 0xFF
                else:
                    length = ngr_len[code]
                    value = (n_gr[code] + ((word >> (32 - length)) & suffix_mask[code])) & 0xFF
                p += length
                corr[i + 1] = value
                # prediction: left and upper mean; first row: left; pixel 0: upper (0 on the first row)
                pred = ((cur[i - 1] + prev[i]) >> 1 if check_runs else cur[i - 1]) if i else prev[0]
                cur[i] = (l2u[value] + pred) & mask
            i += 1
        bits.pos = p
        return i

    def _segment(self, i: int, end: int, bits: _Bits, first_row: bool) -> None:
        st = self.state
        waitmask = (1 << st.wmidx) - 1
        if i == 0:
            self._span(0, 1, bits, first_row, 0)
            if st.waitcnt:
                st.waitcnt -= 1
            else:
                st.waitcnt = st.tabrand() & waitmask
                self._update(0)
            i = 1
        stop = i + st.waitcnt
        run_index = 0
        while True:
            in_run = False
            while stop < end:
                i = self._span(i, stop + 1, bits, first_row, run_index)
                if i <= stop:
                    in_run = True
                    break
                self._update(stop)
                stop = i + (st.tabrand() & waitmask)
            if not in_run:
                i = self._span(i, end, bits, first_row, run_index)
                if i == end:
                    st.waitcnt = stop - end
                    return
            # a run of pixels equal to their left neighbour
            st.waitcnt = stop - i
            run_index = i
            run = self._run(bits)
            if run > end - i:
                raise SpiceProtocolError(f"QUIC image: run of {run} pixels passes the row end ({end - i} left)")
            for c in self.cur:
                c[i : i + run] = [c[i - 1]] * run
            i += run
            if i == end:
                return
            stop = i + st.waitcnt

    def row(self, bits: _Bits, first_row: bool) -> None:
        self.prev, self.cur = self.cur, self.prev
        for corr in self.correlate:
            corr[0] = 0 if first_row else corr[1]
        st = self.state
        width = self.width
        pos = 0
        while st.wmidx < _WM_MAX and st.wmileft <= width:
            if st.wmileft:
                self._segment(pos, pos + st.wmileft, bits, first_row)
                width -= st.wmileft
                pos += st.wmileft
            st.wmidx += 1
            st.wm_trigger = _WM_TRIGGER[min(st.wmidx, 10)]
            st.wmileft = _WM_NEXT
        if width:
            self._segment(pos, pos + width, bits, first_row)
            if st.wmidx < _WM_MAX:
                st.wmileft -= width


_EXPAND5 = [(v << 3) | (v >> 2) for v in range(32)] + [0] * 224


def decode_quic(data: bytes) -> Pixels:
    """Decode a QUIC payload to top-down :class:`Pixels` (B, G, R, X/A)."""
    what = "QUIC image"
    if len(data) < 24:
        raise SpiceProtocolError(f"{what}: {len(data)} bytes, shorter than its header")
    magic, version, kind, width, height = struct.unpack_from("<5I", data, 0)
    if magic != QUIC_MAGIC:
        raise SpiceProtocolError(f"{what}: bad magic {magic:#010x}")
    if version != QUIC_VERSION:
        raise SpiceProtocolError(f"{what}: unsupported version {version:#x}")
    if kind not in TYPE_NAMES:
        raise SpiceProtocolError(f"{what}: unknown QUIC image type {kind}")
    what = f"QUIC {TYPE_NAMES[kind]} image"
    check_size(width, height, what)
    bits = _Bits(data, 5 * 32)
    if kind == TYPE_GRAY:
        planes = [_Plane(1, _FAMILY8, width)]
    elif kind == TYPE_RGB16:
        planes = [_Plane(3, _FAMILY5, width)]
    elif kind == TYPE_RGBA:
        planes = [_Plane(3, _FAMILY8, width), _Plane(1, _FAMILY8, width)]
    else:
        planes = [_Plane(3, _FAMILY8, width)]
    stride = width * 4
    rows: list[bytes] = []
    for y in range(height):
        for plane in planes:
            plane.row(bits, y == 0)
        bits.check(what)
        row = bytearray(stride)
        rgb = planes[0].cur
        if kind == TYPE_GRAY:
            gray = bytes(rgb[0])
            row[0::4] = gray
            row[1::4] = gray
            row[2::4] = gray
            rows.append(bytes(row))
            continue
        r, g, b = rgb
        if kind == TYPE_RGB16:
            r, g, b = [_EXPAND5[v] for v in r], [_EXPAND5[v] for v in g], [_EXPAND5[v] for v in b]
        row[0::4] = bytes(b)
        row[1::4] = bytes(g)
        row[2::4] = bytes(r)
        if kind == TYPE_RGBA:
            row[3::4] = bytes(planes[1].cur[0])
        rows.append(bytes(row))
    return Pixels(width, height, bytearray(b"".join(rows)), kind == TYPE_RGBA)
