//! What the fuzzers do to a frame: edit its bytes, and make its check
//! right again so that the edit reaches the body's reader. Shared by the
//! native fuzzers and the signaling server's (which cannot reach
//! `tests/`); their strategies pick the places (`at`, `from`: a place
//! among `n`, as a proptest `Index` gives one).

use crate::protocol::sync::wire::{self, CHECK, HEADER};

/// `frame` with its check made right for what it holds now; a frame too
/// short to have a header and a check is left as it is.
pub fn checked(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() > HEADER + CHECK {
        let n = frame.len() - CHECK;
        let sum = wire::check(&frame[..n]);
        frame[n..].copy_from_slice(&sum);
    }
    frame
}

/// [`checked`], and its version made ours: only the body's bytes stay
/// as an edit left them.
pub fn checked_as_ours(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() > HEADER + CHECK {
        frame[0] = wire::PROTOCOL_VERSION;
    }
    checked(frame)
}

/// One edit of `frame`, of kind `kind % 8`: a byte flipped, the frame
/// cut, a byte put in or taken out, a byte made an edge value, a piece of
/// itself repeated, a piece of `other` over its own bytes (with no
/// `other`, as the last kind), or a varint made long. An empty frame
/// gets `byte` first.
pub fn edit(
    frame: &mut Vec<u8>,
    kind: u8,
    at: impl Fn(usize) -> usize,
    byte: u8,
    len: usize,
    from: impl Fn(usize) -> usize,
    other: &[u8],
) {
    if frame.is_empty() {
        frame.push(byte);
    }
    let at = at(frame.len());
    match kind % 8 {
        0 => frame[at] ^= byte | 1,
        1 => frame.truncate(at),
        2 => frame.insert(at, byte),
        3 => {
            frame.remove(at);
        }
        4 => frame[at] = [0, 0xff, 0x7f, 0x80, 1][usize::from(byte) % 5],
        // A piece of itself, again.
        5 => {
            let piece = frame[at..(at + 1 + len % 16).min(frame.len())].to_vec();
            frame.splice(at..at, piece);
        }
        // A piece of another frame, over this one's.
        6 if !other.is_empty() => {
            let s = from(other.len());
            let piece = &other[s..(s + 1 + len % 32).min(other.len())];
            let end = (at + piece.len()).min(frame.len());
            frame.splice(at..end, piece.iter().copied());
        }
        // A varint made long: continuation bytes.
        _ => {
            for _ in 0..1 + len % 9 {
                frame.insert(at, 0x80 | byte);
            }
        }
    }
}
