//! The decision kernel as a circuit: each instruction that some wanted
//! bit of an outcome word depends on is bit-blasted with the semantics of
//! `authflow_runtime::kernel`. Bitwise operations and selects only
//! build the bits that are wanted, so the solver gets no gates for the
//! parts of a packed word that a question leaves out.

use std::collections::{HashMap, HashSet};

use authflow_runtime::program::{Flow, Instr};

use batsat::Lit;

use super::circuit::{Circuit, Word};

/// Returns, for each instruction, the bits of its result that the wanted
/// bits of the final outcome words depend on, or `None` where it is dead.
/// A backward liveness pass over the registers computes them, bit by bit
/// through the operations that work bit by bit. `wanted` pairs an outcome
/// word with the mask of its wanted bits.
fn live_bits(code: &[Instr], wanted: &[(u32, u64)]) -> Vec<Option<u64>> {
    let mut live = vec![None; code.len()];
    let mut needed: HashMap<u32, u64> = HashMap::new();
    let mut stored: HashSet<u32> = HashSet::new();
    let need = |needed: &mut HashMap<u32, u64>, register: u32, bits: u64| {
        if bits != 0 {
            *needed.entry(register).or_default() |= bits;
        }
    };
    for (index, instr) in code.iter().enumerate().rev() {
        if let Instr::Store { slot, src } = *instr {
            let bits = wanted
                .iter()
                .filter(|&&(word, _)| word == slot)
                .fold(0, |bits, &(_, mask)| bits | mask);
            if bits != 0 && stored.insert(slot) {
                live[index] = Some(bits);
                need(&mut needed, src, bits);
            }
            continue;
        }
        let Some(dst) = instr.written() else { continue };
        let Some(bits) = needed.remove(&dst) else {
            continue;
        };
        live[index] = Some(bits);
        match *instr {
            Instr::And { a, b, .. } | Instr::Or { a, b, .. } | Instr::Xor { a, b, .. } => {
                need(&mut needed, a, bits);
                need(&mut needed, b, bits);
            }
            Instr::Select { cond, a, b, .. } => {
                need(&mut needed, cond, 1);
                need(&mut needed, a, bits);
                need(&mut needed, b, bits);
            }
            Instr::Mask { a, .. } => need(&mut needed, a, 1),
            _ => {
                for register in instr.read() {
                    need(&mut needed, register, u64::MAX);
                }
            }
        }
    }
    live
}

/// Returns a word with the bits of `mask` from `bit(i)` and the others 0.
fn masked_word(
    c: &mut Circuit,
    mask: u64,
    mut bit: impl FnMut(&mut Circuit, usize) -> Lit,
) -> Word {
    let mut word = c.word(0);
    for (i, slot) in word.iter_mut().enumerate() {
        if mask >> i & 1 == 1 {
            *slot = bit(c, i);
        }
    }
    word
}

/// Runs the flow's code over a symbolic record and returns the wanted
/// outcome words, in the order given. `wanted` pairs an outcome word with
/// the mask of the bits to compute. The other bits of a returned word are
/// 0, and an outcome word that the code never stores is 0.
pub fn outcome(
    c: &mut Circuit,
    flow: &Flow,
    record: &[Word],
    wanted: &[(u32, u64)],
) -> Result<Vec<Word>, String> {
    let live = live_bits(&flow.code, wanted);
    let zero = c.word(0);
    let mut registers = vec![zero; flow.registers as usize];
    let mut outcome = vec![zero; flow.outcome_words as usize];
    for (instr, bits) in flow
        .code
        .iter()
        .zip(&live)
        .filter_map(|(instr, bits)| Some((instr, (*bits)?)))
    {
        let r = &registers;
        let value = match *instr {
            Instr::Load { slot, .. } => record[slot as usize],
            Instr::Const { value, .. } => c.word(value),
            Instr::Store { slot, src } => {
                outcome[slot as usize] = r[src as usize];
                continue;
            }
            Instr::And { a, b, .. } => {
                let (x, y) = (r[a as usize], r[b as usize]);
                masked_word(c, bits, |c, i| c.and(x[i], y[i]))
            }
            Instr::Or { a, b, .. } => {
                let (x, y) = (r[a as usize], r[b as usize]);
                masked_word(c, bits, |c, i| c.or(x[i], y[i]))
            }
            Instr::Xor { a, b, .. } => {
                let (x, y) = (r[a as usize], r[b as usize]);
                masked_word(c, bits, |c, i| c.xor(x[i], y[i]))
            }
            Instr::Shr { a, b, .. } => {
                let (x, y) = (r[a as usize], r[b as usize]);
                c.shr(&x, &y)
            }
            Instr::Eq { a, b, .. } => {
                let (x, y) = (r[a as usize], r[b as usize]);
                let bit = c.eq(&x, &y);
                c.bit_word(bit)
            }
            Instr::Lt { a, b, .. } => {
                let (x, y) = (r[a as usize], r[b as usize]);
                let bit = c.slt(&x, &y);
                c.bit_word(bit)
            }
            Instr::Le { a, b, .. } => {
                let (x, y) = (r[a as usize], r[b as usize]);
                let bit = c.sle(&x, &y);
                c.bit_word(bit)
            }
            Instr::Add { a, b, .. } => {
                let (x, y) = (r[a as usize], r[b as usize]);
                c.add(&x, &y)
            }
            Instr::Sub { a, b, .. } => {
                let (x, y) = (r[a as usize], r[b as usize]);
                c.sub(&x, &y)
            }
            Instr::Select { cond, a, b, .. } => {
                let (choice, x, y) = (r[cond as usize][0], r[a as usize], r[b as usize]);
                masked_word(c, bits, |c, i| c.mux(choice, x[i], y[i]))
            }
            Instr::Nonzero { a, .. } => {
                let x = r[a as usize];
                let bit = c.nonzero(&x);
                c.bit_word(bit)
            }
            Instr::Mask { a, .. } => [r[a as usize][0]; 64],
            Instr::Popcount { a, .. } => {
                let x = r[a as usize];
                c.popcount(&x)
            }
            Instr::Hour { .. } | Instr::Weekday { .. } => {
                return Err(format!(
                    "cannot analyse flow `{}` because its decision depends on hour() or weekday()",
                    flow.name
                ))
            }
        };
        if let Some(dst) = instr.written() {
            registers[dst as usize] = value;
        }
    }
    Ok(wanted
        .iter()
        .map(|&(slot, mask)| {
            let word = outcome[slot as usize];
            masked_word(c, mask, |_, i| word[i])
        })
        .collect())
}
