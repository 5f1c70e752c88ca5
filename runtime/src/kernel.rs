//! The bytecode decision kernel.
//!
//! The interpreter walks the flow's instruction list once, front to back.
//! The list has no jumps, so the sequence of executed instructions is the
//! same for every input; data only flows through register values. Compares
//! and selects use `subtle`'s constant-time primitives, no value indexes a
//! table, and the kernel allocates nothing: registers and the outcome record
//! are buffers owned by the caller.

use subtle::{ConditionallySelectable, ConstantTimeEq, ConstantTimeGreater, ConstantTimeLess};

use crate::program::Instr;
use crate::value::{hour_of, weekday_of};

const SIGN: u64 = 1 << 63;

/// Signed `a < b` as 0 or 1: flipping the sign bit maps signed order onto
/// unsigned order.
#[inline]
fn less(a: u64, b: u64) -> u64 {
    u64::from((a ^ SIGN).ct_lt(&(b ^ SIGN)).unwrap_u8())
}

#[inline]
fn less_or_equal(a: u64, b: u64) -> u64 {
    1 ^ u64::from((a ^ SIGN).ct_gt(&(b ^ SIGN)).unwrap_u8())
}

/// Runs `code` over `record`, writing `outcome`. The program verifier has
/// checked every index against these buffers' sizes.
pub fn run(code: &[Instr], record: &[u64], registers: &mut [u64], outcome: &mut [u64]) {
    for instr in code {
        execute(instr, record, registers, outcome);
    }
}

/// Runs `code` and appends each executed opcode to `opcodes`. Only tests
/// use this: it shows that the executed sequence does not depend on input.
pub fn run_recording(
    code: &[Instr],
    record: &[u64],
    registers: &mut [u64],
    outcome: &mut [u64],
    opcodes: &mut Vec<&'static str>,
) {
    for instr in code {
        opcodes.push(instr.opcode());
        execute(instr, record, registers, outcome);
    }
}

#[inline(always)]
fn execute(instr: &Instr, record: &[u64], r: &mut [u64], outcome: &mut [u64]) {
    match *instr {
        Instr::Load { dst, slot } => r[dst as usize] = record[slot as usize],
        Instr::Const { dst, value } => r[dst as usize] = value,
        Instr::Store { slot, src } => outcome[slot as usize] = r[src as usize],
        Instr::And { dst, a, b } => r[dst as usize] = r[a as usize] & r[b as usize],
        Instr::Or { dst, a, b } => r[dst as usize] = r[a as usize] | r[b as usize],
        Instr::Xor { dst, a, b } => r[dst as usize] = r[a as usize] ^ r[b as usize],
        Instr::Shr { dst, a, b } => r[dst as usize] = r[a as usize] >> (r[b as usize] & 63),
        Instr::Eq { dst, a, b } => {
            r[dst as usize] = u64::from(r[a as usize].ct_eq(&r[b as usize]).unwrap_u8())
        }
        Instr::Lt { dst, a, b } => r[dst as usize] = less(r[a as usize], r[b as usize]),
        Instr::Le { dst, a, b } => r[dst as usize] = less_or_equal(r[a as usize], r[b as usize]),
        Instr::Add { dst, a, b } => {
            r[dst as usize] = (r[a as usize] as i64).saturating_add(r[b as usize] as i64) as u64
        }
        Instr::Sub { dst, a, b } => {
            r[dst as usize] = (r[a as usize] as i64).saturating_sub(r[b as usize] as i64) as u64
        }
        Instr::Select { dst, cond, a, b } => {
            let choice = subtle::Choice::from((r[cond as usize] & 1) as u8);
            r[dst as usize] = u64::conditional_select(&r[b as usize], &r[a as usize], choice);
        }
        Instr::Nonzero { dst, a } => {
            r[dst as usize] = 1 ^ u64::from(r[a as usize].ct_eq(&0).unwrap_u8())
        }
        Instr::Mask { dst, a } => r[dst as usize] = (r[a as usize] & 1).wrapping_neg(),
        Instr::Popcount { dst, a } => r[dst as usize] = u64::from(r[a as usize].count_ones()),
        Instr::Hour { dst, a } => r[dst as usize] = hour_of(r[a as usize] as i64) as u64,
        Instr::Weekday { dst, a } => r[dst as usize] = weekday_of(r[a as usize] as i64) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_comparisons() {
        let minus_one = (-1i64) as u64;
        assert_eq!(less(minus_one, 0), 1);
        assert_eq!(less(0, minus_one), 0);
        assert_eq!(less_or_equal(5, 5), 1);
        assert_eq!(less_or_equal(i64::MIN as u64, i64::MAX as u64), 1);
        assert_eq!(less_or_equal(i64::MAX as u64, i64::MIN as u64), 0);
    }

    #[test]
    fn select_picks_without_branching_on_condition() {
        let code = [
            Instr::Const { dst: 0, value: 1 },
            Instr::Const { dst: 1, value: 10 },
            Instr::Const { dst: 2, value: 20 },
            Instr::Select {
                dst: 3,
                cond: 0,
                a: 1,
                b: 2,
            },
            Instr::Store { slot: 0, src: 3 },
        ];
        let mut registers = [0; 4];
        let mut outcome = [0; 1];
        run(&code, &[], &mut registers, &mut outcome);
        assert_eq!(outcome[0], 10);
    }
}
