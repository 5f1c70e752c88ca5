//! The bytecode decision kernel.
//!
//! The interpreter walks the flow's instruction list once, front to back.
//! The list has no jumps, so the sequence of executed instructions is the
//! same for every input; data only flows through register values. Compares
//! and selects use `subtle`'s constant-time primitives, no value indexes a
//! table, and the kernel allocates nothing: registers and the outcome record
//! are buffers owned by the caller.

use std::ops::{Index, IndexMut};

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

/// The size of the register file of [`run_small`].
pub const FILE: usize = 256;

/// A register file of [`FILE`] registers: indexes are taken modulo its
/// size, so reading or writing a register needs no bounds check.
struct File<'a>(&'a mut [u64; FILE]);

impl Index<u32> for File<'_> {
    type Output = u64;

    #[inline(always)]
    fn index(&self, register: u32) -> &u64 {
        &self.0[register as usize % FILE]
    }
}

impl IndexMut<u32> for File<'_> {
    #[inline(always)]
    fn index_mut(&mut self, register: u32) -> &mut u64 {
        &mut self.0[register as usize % FILE]
    }
}

/// A register file of any size, with bounds checks.
struct Slice<'a>(&'a mut [u64]);

impl Index<u32> for Slice<'_> {
    type Output = u64;

    #[inline(always)]
    fn index(&self, register: u32) -> &u64 {
        &self.0[register as usize]
    }
}

impl IndexMut<u32> for Slice<'_> {
    #[inline(always)]
    fn index_mut(&mut self, register: u32) -> &mut u64 {
        &mut self.0[register as usize]
    }
}

/// Runs `code` over `record`, writing `outcome`. The program verifier has
/// checked every index against these buffers' sizes.
pub fn run(code: &[Instr], record: &[u64], registers: &mut [u64], outcome: &mut [u64]) {
    let mut registers = Slice(registers);
    for instr in code {
        execute(instr, record, &mut registers, outcome);
    }
}

/// Runs `code` like [`run`] with a register file of [`FILE`] registers,
/// which is faster. The program verifier must have checked that every
/// register of `code` is below [`FILE`]; a larger one would wrap around.
pub fn run_small(code: &[Instr], record: &[u64], registers: &mut [u64; FILE], outcome: &mut [u64]) {
    let mut registers = File(registers);
    for instr in code {
        execute(instr, record, &mut registers, outcome);
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
    let mut registers = Slice(registers);
    for instr in code {
        opcodes.push(instr.opcode());
        execute(instr, record, &mut registers, outcome);
    }
}

#[inline(always)]
fn execute<R>(instr: &Instr, record: &[u64], r: &mut R, outcome: &mut [u64])
where
    R: IndexMut<u32, Output = u64>,
{
    match *instr {
        Instr::Load { dst, slot } => r[dst] = record[slot as usize],
        Instr::Const { dst, value } => r[dst] = value,
        Instr::Store { slot, src } => outcome[slot as usize] = r[src],
        Instr::And { dst, a, b } => r[dst] = r[a] & r[b],
        Instr::Or { dst, a, b } => r[dst] = r[a] | r[b],
        Instr::Xor { dst, a, b } => r[dst] = r[a] ^ r[b],
        Instr::Shr { dst, a, b } => r[dst] = r[a] >> (r[b] & 63),
        Instr::Eq { dst, a, b } => r[dst] = u64::from(r[a].ct_eq(&r[b]).unwrap_u8()),
        Instr::Lt { dst, a, b } => r[dst] = less(r[a], r[b]),
        Instr::Le { dst, a, b } => r[dst] = less_or_equal(r[a], r[b]),
        Instr::Add { dst, a, b } => r[dst] = (r[a] as i64).saturating_add(r[b] as i64) as u64,
        Instr::Sub { dst, a, b } => r[dst] = (r[a] as i64).saturating_sub(r[b] as i64) as u64,
        Instr::Select { dst, cond, a, b } => {
            let choice = subtle::Choice::from((r[cond] & 1) as u8);
            r[dst] = u64::conditional_select(&r[b], &r[a], choice);
        }
        Instr::Nonzero { dst, a } => r[dst] = 1 ^ u64::from(r[a].ct_eq(&0).unwrap_u8()),
        Instr::Mask { dst, a } => r[dst] = (r[a] & 1).wrapping_neg(),
        Instr::Popcount { dst, a } => r[dst] = u64::from(r[a].count_ones()),
        Instr::Hour { dst, a } => r[dst] = hour_of(r[a] as i64) as u64,
        Instr::Weekday { dst, a } => r[dst] = weekday_of(r[a] as i64) as u64,
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
