//! The decision kernel as a circuit: each instruction that some wanted
//! outcome word depends on is bit-blasted with the semantics of
//! `authflow_runtime::kernel`.

use std::collections::HashSet;

use authflow_runtime::program::{Flow, Instr};

use super::circuit::{Circuit, Word};

/// Marks the instructions that the final value of each outcome word in
/// `wanted` depends on, by a backward liveness pass over the registers.
fn live_instructions(code: &[Instr], wanted: &[u32]) -> Vec<bool> {
    let mut live = vec![false; code.len()];
    let mut needed: HashSet<u32> = HashSet::new();
    let mut stored: HashSet<u32> = HashSet::new();
    for (index, instr) in code.iter().enumerate().rev() {
        match *instr {
            Instr::Store { slot, src } => {
                if wanted.contains(&slot) && stored.insert(slot) {
                    live[index] = true;
                    needed.insert(src);
                }
            }
            _ => {
                let Some(dst) = instr.written() else { continue };
                if needed.remove(&dst) {
                    live[index] = true;
                    needed.extend(instr.read());
                }
            }
        }
    }
    live
}

/// Runs the flow's code over a symbolic record and returns the wanted
/// outcome words, in the order given. An outcome word never stored is 0.
pub fn outcome(
    c: &mut Circuit,
    flow: &Flow,
    record: &[Word],
    wanted: &[u32],
) -> Result<Vec<Word>, String> {
    let live = live_instructions(&flow.code, wanted);
    let zero = c.word(0);
    let mut registers = vec![zero; flow.registers as usize];
    let mut outcome = vec![zero; flow.outcome_words as usize];
    for (instr, _) in flow.code.iter().zip(&live).filter(|(_, &live)| live) {
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
                c.bitwise(&x, &y, Circuit::and)
            }
            Instr::Or { a, b, .. } => {
                let (x, y) = (r[a as usize], r[b as usize]);
                c.bitwise(&x, &y, Circuit::or)
            }
            Instr::Xor { a, b, .. } => {
                let (x, y) = (r[a as usize], r[b as usize]);
                c.bitwise(&x, &y, Circuit::xor)
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
                c.select(choice, &x, &y)
            }
            Instr::Merge { dst, cond, a } => {
                let (choice, x, accumulator) =
                    (r[cond as usize][0], r[a as usize], r[dst as usize]);
                let merged = c.bitwise(&accumulator, &x, Circuit::or);
                c.select(choice, &merged, &accumulator)
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
    Ok(wanted.iter().map(|&slot| outcome[slot as usize]).collect())
}
