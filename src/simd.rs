//! Byte-class searches for the JSON hot path, 16 bytes at a time.
//!
//! `memchr2` is fast over long spans, but a CloudFront line has a tab (escaped `\t`) every ten
//! bytes or so: the per-call setup then costs more than the search. These loops are inlined
//! into the scanner and the escaper and use SSE2, which every x86_64 processor has (no runtime
//! detection needed); other targets get the same results from a plain loop.

/// The first byte at or after `from` that JSON must escape in a string (a control byte below
/// 0x20, `"` or `\`): what `copy_until::<true>` stops at, one byte at a time.
/// Append `s` escaped as JSON string content to `out`: `escape[b]` is 0 for a byte that needs
/// no escape, else its escape letter (`u` for `\u00XX`). The hot loop of s3s-cat: output is
/// written through a raw pointer: each step stores 16 bytes, keeps those before the first
/// special byte and writes that byte's escape, with one capacity check per step instead of
/// one per write.
#[inline(always)]
pub fn escape_json(s: &[u8], out: &mut Vec<u8>, escape: &[u8; 256]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // One step writes at most 16 bytes, or fewer plus one escape of up to 6.
    const BLOCK_MAX: usize = 16 + 6;
    out.reserve(s.len() + BLOCK_MAX);
    let mut w = out.len();
    let mut i = 0;
    // SAFETY: every write below goes to out[w..w + n] with w + n <= capacity: the capacity is
    // checked against w + BLOCK_MAX before each step (a step writes at most BLOCK_MAX bytes),
    // and before each byte of the tail (at most 6 each). `w` only counts bytes written, so
    // set_len(w) covers initialised bytes. Loads stay within `s`.
    unsafe {
        let put_escape = |b: u8, base: *mut u8, w: &mut usize| {
            let e = escape[b as usize];
            if e == b'u' {
                let bytes = [b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]];
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(*w), 6);
                *w += 6;
            } else {
                *base.add(*w) = b'\\';
                *base.add(*w + 1) = e;
                *w += 2;
            }
        };
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::*;
            let ctl = _mm_set1_epi8(0x1f);
            let quote = _mm_set1_epi8(b'"' as i8);
            let back = _mm_set1_epi8(b'\\' as i8);
            while i + 16 <= s.len() {
                if out.capacity() - w < BLOCK_MAX {
                    out.set_len(w);
                    out.reserve(s.len() - i + BLOCK_MAX);
                }
                let base = out.as_mut_ptr();
                let v = _mm_loadu_si128(s.as_ptr().add(i) as *const __m128i);
                _mm_storeu_si128(base.add(w) as *mut __m128i, v);
                let hit = _mm_or_si128(
                    _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl),
                    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, back)),
                );
                let mask = _mm_movemask_epi8(hit) as u32;
                if mask == 0 {
                    w += 16;
                    i += 16;
                    continue;
                }
                // The bytes before the special one are in place; its escape goes after them,
                // and the next block starts right behind it.
                let k = mask.trailing_zeros() as usize;
                w += k;
                put_escape(s[i + k], base, &mut w);
                i += k + 1;
            }
        }
        if out.capacity() - w < (s.len() - i) * 6 {
            out.set_len(w);
            out.reserve((s.len() - i) * 6);
        }
        let base = out.as_mut_ptr();
        while i < s.len() {
            let b = s[i];
            if escape[b as usize] == 0 {
                *base.add(w) = b;
                w += 1;
            } else {
                put_escape(b, base, &mut w);
            }
            i += 1;
        }
        out.set_len(w);
    }
}

#[cfg(test)]
fn scalar_escape(s: &[u8], from: usize) -> Option<usize> {
    s.get(from..)?.iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\').map(|p| from + p)
}

/// Index of the first `"` or `\` at or after `from`, or `None`.
#[inline(always)]
pub fn find_quote_or_backslash(s: &[u8], from: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let mut i = from;
        // SAFETY: SSE2 is part of the x86_64 baseline; loads are unaligned and stay within `s`
        // (i + 16 <= s.len()).
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let back = _mm_set1_epi8(b'\\' as i8);
            while i + 16 <= s.len() {
                let v = _mm_loadu_si128(s.as_ptr().add(i) as *const __m128i);
                let hit = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, back));
                let mask = _mm_movemask_epi8(hit) as u32;
                if mask != 0 {
                    return Some(i + mask.trailing_zeros() as usize);
                }
                i += 16;
            }
        }
        scalar_quote(s, i)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        scalar_quote(s, from)
    }
}

#[inline(always)]
fn scalar_quote(s: &[u8], from: usize) -> Option<usize> {
    s.get(from..)?.iter().position(|&b| b == b'"' || b == b'\\').map(|p| from + p)
}

/// Append the bytes of `s` from `from` up to the first `"` or `\` to `out`, and return that
/// byte's index; `None` when there is none (all of the rest was appended). Copies 16 bytes at a
/// time without a call per span: CloudFront lines have an escape every ten bytes or so.
#[inline(always)]
pub fn copy_until_quote_or_backslash(s: &[u8], from: usize, out: &mut Vec<u8>) -> Option<usize> {
    copy_until::<false>(s, from, out)
}

#[inline(always)]
fn copy_until<const CONTROL: bool>(s: &[u8], from: usize, out: &mut Vec<u8>) -> Option<usize> {
    out.reserve(s.len().saturating_sub(from) + 16);
    // SAFETY: the capacity was just reserved as copy_until_reserved requires.
    unsafe { copy_until_reserved::<CONTROL>(s, from, out) }
}

/// [`copy_until_quote_or_backslash`] for a caller that has reserved the room already.
///
/// # Safety
/// `out` must have spare capacity for the rest of `s` plus 16 bytes:
/// `out.capacity() >= out.len() + s.len() - from + 16`.
#[inline(always)]
pub unsafe fn copy_until_quote_or_backslash_reserved(s: &[u8], from: usize, out: &mut Vec<u8>) -> Option<usize> {
    // SAFETY: passed on to the caller.
    unsafe { copy_until_reserved::<false>(s, from, out) }
}

#[inline(always)]
unsafe fn copy_until_reserved<const CONTROL: bool>(s: &[u8], from: usize, out: &mut Vec<u8>) -> Option<usize> {
    let mut i = from;
    let mut w = out.len();
    let base = out.as_mut_ptr();
    // SAFETY: loads stay within `s` (i + 16 <= s.len()); the stores write at most the rest of
    // `s` plus 16 bytes past the length, which the caller reserved; the length grows only over
    // bytes copied from `s`.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::*;
            let ctl = _mm_set1_epi8(0x1f);
            let quote = _mm_set1_epi8(b'"' as i8);
            let back = _mm_set1_epi8(b'\\' as i8);
            while i + 16 <= s.len() {
                let v = _mm_loadu_si128(s.as_ptr().add(i) as *const __m128i);
                _mm_storeu_si128(base.add(w) as *mut __m128i, v);
                let mut hit = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, back));
                if CONTROL {
                    hit = _mm_or_si128(hit, _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl));
                }
                let mask = _mm_movemask_epi8(hit) as u32;
                if mask != 0 {
                    let k = mask.trailing_zeros() as usize;
                    out.set_len(w + k);
                    return Some(i + k);
                }
                w += 16;
                i += 16;
            }
        }
        while i < s.len() {
            let b = s[i];
            if b == b'"' || b == b'\\' || (CONTROL && b < 0x20) {
                out.set_len(w);
                return Some(i);
            }
            *base.add(w) = b;
            w += 1;
            i += 1;
        }
        out.set_len(w);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agree_with_a_plain_loop_at_every_offset() {
        for special in [0u8, 1, 9, 0x1f, b'"', b'\\', 0x20, 0x7f, 0x80, 0xff] {
            for len in 0..40 {
                for pos in 0..len {
                    let mut v = vec![b'a'; len];
                    v[pos] = special;
                    for from in 0..=len {
                        assert_eq!(find_quote_or_backslash(&v, from), scalar_quote(&v, from));
                        let mut out = b"pre".to_vec();
                        let stop = copy_until::<true>(&v, from, &mut out);
                        assert_eq!(stop, scalar_escape(&v, from));
                        assert_eq!(&out[3..], &v[from.min(len)..stop.unwrap_or(len)]);
                        let mut out = Vec::new();
                        let stop = copy_until_quote_or_backslash(&v, from, &mut out);
                        assert_eq!(stop, scalar_quote(&v, from));
                        assert_eq!(&out[..], &v[from.min(len)..stop.unwrap_or(len)]);
                    }
                }
            }
        }
        assert_eq!(copy_until::<true>(b"abc", 4, &mut Vec::new()), None);
    }

    #[test]
    fn escape_json_agrees_with_serde_json() {
        let mut table = [0u8; 256];
        table[..0x20].fill(b'u');
        for (b, e) in [(b'\t', b't'), (b'\n', b'n'), (b'\r', b'r'), (8, b'b'), (12, b'f'), (b'"', b'"'), (b'\\', b'\\')] {
            table[b as usize] = e;
        }
        let specials = ["\t", "\"", "\\", "\u{1}", "\n", "é", "😀", "a"];
        for len in 0..50 {
            for seed in 0..specials.len() {
                // Strings of `len` pieces, specials spread over every position of the blocks.
                let text: String = (0..len).map(|i| specials[(i * 7 + seed + i / 3) % specials.len()]).collect();
                let mut out = b"prefix".to_vec();
                escape_json(text.as_bytes(), &mut out, &table);
                let expected = serde_json::to_string(&text).unwrap();
                assert_eq!(std::str::from_utf8(&out[6..]).unwrap(), &expected[1..expected.len() - 1], "{text:?}");
            }
        }
    }
}
