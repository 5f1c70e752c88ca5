//! Instruction order for the native backend.
//!
//! Bytecode computes every guard of a flow in flow order, and the decision
//! kernel then selects among the sites from the last to the first. Code in
//! that order keeps every guard live until the selection reaches it, which
//! spills registers on a machine with few of them. [`schedule`] reorders a
//! flow's code so that each value is computed just before its first use.
//! It renames the code into single-assignment form. Then it emits the
//! stores in their original order, each after the values it needs, and
//! visits the operand with the longest chain of instructions first. The
//! result computes the same outcome words with the same instructions, in
//! another order, without the instructions that no store needs.

use crate::program::Instr;

/// Returns `code` reordered as the module comment describes, and the number
/// of registers it uses, which is `code.len()`. Fails on a register
/// that `code` reads before any instruction writes it: the interpreter
/// would read whatever the caller's register buffer holds, which no
/// compiled value can match.
pub fn schedule(code: &[Instr], registers: u32) -> Result<(Vec<Instr>, u32), String> {
    // Node `i` is the value written by `code[i]`. Stores write no value.
    let mut writer: Vec<Option<u32>> = vec![None; registers as usize];
    let mut operands: Vec<Vec<u32>> = Vec::with_capacity(code.len());
    let mut renamed: Vec<Instr> = Vec::with_capacity(code.len());
    for (index, instr) in code.iter().enumerate() {
        for register in instr.read() {
            match writer.get(register as usize) {
                Some(Some(_)) => {}
                Some(None) => {
                    return Err(format!(
                        "instruction {index}: register {register} is read before any instruction writes it"
                    ))
                }
                None => {
                    return Err(format!(
                        "instruction {index}: register {register} is out of range (limit {registers})"
                    ))
                }
            }
        }
        let current = |register: u32| writer[register as usize].unwrap_or_default();
        let node = index as u32;
        let reads: Vec<u32> = instr.read().map(current).collect();
        operands.push(reads);
        let instr = instr.map_registers(current, |_| node);
        renamed.push(instr);
        if let Some(dst) = code[index].written() {
            if let Some(slot) = writer.get_mut(dst as usize) {
                *slot = Some(node);
            }
        }
    }

    // How many instructions each node waits on, along its deepest chain
    // of operands.
    let mut depth = vec![0u32; code.len()];
    for node in 0..code.len() {
        depth[node] = operands[node]
            .iter()
            .map(|&operand| depth[operand as usize] + 1)
            .max()
            .unwrap_or(0);
    }

    let mut emitted = vec![false; code.len()];
    let mut order: Vec<Instr> = Vec::with_capacity(code.len());
    // Depth-first, without recursion: a chain can be as long as the flow.
    let mut stack: Vec<(u32, bool)> = Vec::new();
    for (root, instr) in renamed.iter().enumerate() {
        if !matches!(instr, Instr::Store { .. }) {
            continue;
        }
        stack.push((root as u32, false));
        while let Some((node, operands_done)) = stack.pop() {
            let index = node as usize;
            if emitted[index] {
                continue;
            }
            if operands_done {
                emitted[index] = true;
                order.push(renamed[index]);
                continue;
            }
            stack.push((node, true));
            let mut pending: Vec<u32> = operands[index]
                .iter()
                .copied()
                .filter(|&operand| !emitted[operand as usize])
                .collect();
            // The deepest operand is visited first, so it is pushed last.
            pending.sort_by_key(|&operand| depth[operand as usize]);
            stack.extend(pending.into_iter().map(|operand| (operand, false)));
        }
    }
    Ok((order, code.len() as u32))
}
