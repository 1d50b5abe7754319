//! Byte-class searches for the JSON hot path, 16 bytes at a time.
//!
//! `memchr2` is fast over long spans, but a CloudFront line has a tab (escaped `\t`) every ten
//! bytes or so: the per-call setup then costs more than the search. These loops are inlined
//! into the scanner and the escaper and use SSE2, which every x86_64 processor has (no runtime
//! detection needed); other targets get the same results from a plain loop.

/// The first byte at or after `from` that JSON must escape in a string (a control byte below
/// 0x20, `"` or `\`): what [`copy_until_escape`] stops at, one byte at a time.
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

/// Append the bytes of `s` from `from` up to the first byte JSON must escape (see
/// `scalar_escape`) to `out`, and return that byte's index; `None` when there is none (all of
/// the rest was appended). Copies 16 bytes at a time without a call per span: CloudFront lines
/// have an escape every ten bytes or so.
#[inline(always)]
pub fn copy_until_escape(s: &[u8], from: usize, out: &mut Vec<u8>) -> Option<usize> {
    copy_until::<true>(s, from, out)
}

/// Like [`copy_until_escape`], up to the first `"` or `\`.
#[inline(always)]
pub fn copy_until_quote_or_backslash(s: &[u8], from: usize, out: &mut Vec<u8>) -> Option<usize> {
    copy_until::<false>(s, from, out)
}

#[inline(always)]
fn copy_until<const CONTROL: bool>(s: &[u8], from: usize, out: &mut Vec<u8>) -> Option<usize> {
    let mut i = from;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86_64 baseline. Loads stay within `s` (i + 16 <=
        // s.len()); each store writes 16 bytes into spare capacity reserved just before, and the
        // length grows only over the bytes that belong to the output.
        unsafe {
            let ctl = _mm_set1_epi8(0x1f);
            let quote = _mm_set1_epi8(b'"' as i8);
            let back = _mm_set1_epi8(b'\\' as i8);
            while i + 16 <= s.len() {
                out.reserve(16);
                let v = _mm_loadu_si128(s.as_ptr().add(i) as *const __m128i);
                let len = out.len();
                _mm_storeu_si128(out.as_mut_ptr().add(len) as *mut __m128i, v);
                let mut hit = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, back));
                if CONTROL {
                    hit = _mm_or_si128(hit, _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl));
                }
                let mask = _mm_movemask_epi8(hit) as u32;
                if mask != 0 {
                    let k = mask.trailing_zeros() as usize;
                    out.set_len(len + k);
                    return Some(i + k);
                }
                out.set_len(len + 16);
                i += 16;
            }
        }
    }
    let rest = s.get(i..).unwrap_or_default();
    match rest.iter().position(|&b| b == b'"' || b == b'\\' || (CONTROL && b < 0x20)) {
        Some(k) => {
            out.extend_from_slice(&rest[..k]);
            Some(i + k)
        }
        None => {
            out.extend_from_slice(rest);
            None
        }
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
                        let stop = copy_until_escape(&v, from, &mut out);
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
        assert_eq!(copy_until_escape(b"abc", 4, &mut Vec::new()), None);
    }
}
