//! Emission: allocates physical registers for the lowered code and
//! assembles the bytecode program.
//!
//! The code is straight-line, so a register's live range is the span from
//! its first to its last occurrence; a linear scan reuses registers whose
//! range has ended. Operands are read before the result is written, so an
//! instruction may write a register that one of its operands frees.

use std::collections::HashMap;
use std::fmt::Write;

use authflow_runtime::program::{Instr, Program};

use crate::lower::FlowIr;

/// Assembles the program from its lowered flows.
pub fn emit(mut program: Program, flows: Vec<FlowIr>) -> Program {
    program.flows = flows
        .into_iter()
        .map(|mut ir| {
            ir.flow.code = eliminate_dead_code(&ir.flow.code);
            allocate(ir.flow)
        })
        .collect();
    program
}

/// Drops instructions whose result no later instruction reads. Stores to
/// the outcome record are the roots.
fn eliminate_dead_code(code: &[Instr]) -> Vec<Instr> {
    let mut needed: std::collections::HashSet<u32> = std::collections::HashSet::new();
    let mut kept = Vec::with_capacity(code.len());
    for instr in code.iter().rev() {
        let (dst, uses) = registers_of(instr);
        if let Some(dst) = dst {
            if !needed.remove(&dst) {
                continue;
            }
        }
        needed.extend(uses);
        kept.push(*instr);
    }
    kept.reverse();
    kept
}

/// Returns the register an instruction writes and the registers it reads.
fn registers_of(instr: &Instr) -> (Option<u32>, Vec<u32>) {
    (instr.written(), instr.read().collect())
}

fn allocate(mut flow: authflow_runtime::program::Flow) -> authflow_runtime::program::Flow {
    let mut last_occurrence: HashMap<u32, usize> = HashMap::new();
    for (index, instr) in flow.code.iter().enumerate() {
        let (dst, uses) = registers_of(instr);
        for register in uses.into_iter().chain(dst) {
            last_occurrence.insert(register, index);
        }
    }
    let mut assigned: HashMap<u32, u32> = HashMap::new();
    let mut free: Vec<u32> = Vec::new();
    let mut is_free: Vec<bool> = Vec::new();
    let mut count = 0u32;
    let mut code = Vec::with_capacity(flow.code.len());
    for (index, instr) in flow.code.iter().enumerate() {
        let (dst, uses) = registers_of(instr);
        // Operands whose range ends here free their registers before the result is placed.
        for register in &uses {
            if last_occurrence.get(register) == Some(&index) && Some(*register) != dst {
                if let Some(&physical) = assigned.get(register) {
                    release(physical, &mut free, &mut is_free);
                }
            }
        }
        if let Some(dst) = dst {
            if let std::collections::hash_map::Entry::Vacant(entry) = assigned.entry(dst) {
                let physical = match free.pop() {
                    Some(physical) => {
                        is_free[physical as usize] = false;
                        physical
                    }
                    None => {
                        count += 1;
                        is_free.push(false);
                        count - 1
                    }
                };
                entry.insert(physical);
            }
        }
        let map = |register: u32| assigned.get(&register).copied().unwrap_or(0);
        code.push(instr.map_registers(map, map));
        if let Some(dst) = dst {
            if last_occurrence.get(&dst) == Some(&index) {
                if let Some(&physical) = assigned.get(&dst) {
                    release(physical, &mut free, &mut is_free);
                }
            }
        }
    }
    flow.code = code;
    flow.registers = count;
    flow
}

fn release(physical: u32, free: &mut Vec<u32>, is_free: &mut [bool]) {
    if !is_free[physical as usize] {
        is_free[physical as usize] = true;
        free.push(physical);
    }
}

/// Renders lowered code as text, one instruction per line, with each
/// step's source line as a comment.
pub fn render_ir(flows: &[FlowIr]) -> String {
    let mut text = String::new();
    for ir in flows {
        let _ = writeln!(
            text,
            "flow {} ({} virtual registers, {} outcome words)",
            ir.flow.name, ir.flow.registers, ir.flow.outcome_words
        );
        let mut comments = ir.comments.iter().peekable();
        for (index, instr) in ir.flow.code.iter().enumerate() {
            while let Some((_, comment)) = comments.next_if(|(at, _)| *at == index) {
                let _ = writeln!(text, "    ; {comment}");
            }
            let _ = writeln!(text, "    {index:5}  {}", render_instr(instr));
        }
        text.push('\n');
    }
    text
}

fn render_instr(instr: &Instr) -> String {
    let (dst, uses) = registers_of(instr);
    let operands: Vec<String> = uses.iter().map(|r| format!("v{r}")).collect();
    match *instr {
        Instr::Load { dst, slot } => format!("v{dst} = load record[{slot}]"),
        Instr::Const { dst, value } => format!("v{dst} = const {}", value as i64),
        Instr::Store { slot, src } => format!("outcome[{slot}] = v{src}"),
        _ => format!(
            "v{} = {} {}",
            dst.unwrap_or(0),
            instr.opcode(),
            operands.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_reuses_dead_registers() {
        let flow = authflow_runtime::program::Flow {
            name: "f".into(),
            kinds: vec![],
            event: None,
            entry: true,
            registers: 4,
            outcome_words: 8,
            role_words: 1,
            obligations: 5,
            code: vec![
                Instr::Const { dst: 0, value: 1 },
                Instr::Const { dst: 1, value: 2 },
                Instr::Add { dst: 2, a: 0, b: 1 },
                Instr::Const { dst: 3, value: 3 },
                Instr::Add { dst: 2, a: 2, b: 3 },
                Instr::Store { slot: 0, src: 2 },
            ],
            sites: vec![],
            emits: vec![],
            exceptions: vec![],
            steps: vec![],
        };
        let allocated = allocate(flow);
        assert_eq!(allocated.registers, 2);
    }
}
