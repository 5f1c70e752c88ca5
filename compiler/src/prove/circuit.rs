//! Bit-level circuits over a SAT solver: gates with constant folding and
//! structural hashing, Tseitin-encoded as they are built, and the 64-bit
//! word operations of the decision kernel on top of them.

use std::collections::HashMap;

use batsat::{lbool, BasicSolver, Lit, SolverInterface};

/// A 64-bit value as literals, least significant bit first.
pub type Word = [Lit; 64];

pub struct Circuit {
    pub solver: BasicSolver,
    true_lit: Lit,
    ands: HashMap<(Lit, Lit), Lit>,
    xors: HashMap<(Lit, Lit), Lit>,
    muxes: HashMap<(Lit, Lit, Lit), Lit>,
}

impl Circuit {
    pub fn new() -> Circuit {
        let mut solver = BasicSolver::default();
        let var = solver.new_var_default();
        let true_lit = Lit::new(var, true);
        solver.add_clause_reuse(&mut vec![true_lit]);
        Circuit {
            solver,
            true_lit,
            ands: HashMap::new(),
            xors: HashMap::new(),
            muxes: HashMap::new(),
        }
    }

    pub fn constant(&self, value: bool) -> Lit {
        if value {
            self.true_lit
        } else {
            !self.true_lit
        }
    }

    pub fn known(&self, lit: Lit) -> Option<bool> {
        if lit == self.true_lit {
            Some(true)
        } else if lit == !self.true_lit {
            Some(false)
        } else {
            None
        }
    }

    /// Creates an unconstrained input bit. The solver tries `false` first,
    /// so models tend to have small numbers and few set bits.
    pub fn input(&mut self) -> Lit {
        Lit::new(self.solver.new_var(lbool::FALSE, true), true)
    }

    fn gate(&mut self) -> Lit {
        Lit::new(self.solver.new_var(lbool::UNDEF, true), true)
    }

    pub fn assert(&mut self, lit: Lit) {
        self.solver.add_clause_reuse(&mut vec![lit]);
    }

    /// Value of a literal in the last model; unassigned counts as false.
    pub fn value(&self, lit: Lit) -> bool {
        if let Some(value) = self.known(lit) {
            return value;
        }
        self.solver.value_lit(lit) == lbool::TRUE
    }

    pub fn and(&mut self, a: Lit, b: Lit) -> Lit {
        match (self.known(a), self.known(b)) {
            (Some(false), _) | (_, Some(false)) => return self.constant(false),
            (Some(true), _) => return b,
            (_, Some(true)) => return a,
            _ => {}
        }
        if a == b {
            return a;
        }
        if a == !b {
            return self.constant(false);
        }
        let key = if a < b { (a, b) } else { (b, a) };
        if let Some(&gate) = self.ands.get(&key) {
            return gate;
        }
        let g = self.gate();
        self.solver.add_clause_reuse(&mut vec![!g, a]);
        self.solver.add_clause_reuse(&mut vec![!g, b]);
        self.solver.add_clause_reuse(&mut vec![g, !a, !b]);
        self.ands.insert(key, g);
        g
    }

    pub fn or(&mut self, a: Lit, b: Lit) -> Lit {
        !self.and(!a, !b)
    }

    pub fn xor(&mut self, a: Lit, b: Lit) -> Lit {
        match (self.known(a), self.known(b)) {
            (Some(x), _) => return if x { !b } else { b },
            (_, Some(y)) => return if y { !a } else { a },
            _ => {}
        }
        if a == b {
            return self.constant(false);
        }
        if a == !b {
            return self.constant(true);
        }
        // Normalise to positive inputs: xor(!a, b) == !xor(a, b).
        let flip = a.sign() != b.sign();
        let (pa, pb) = (if a.sign() { a } else { !a }, if b.sign() { b } else { !b });
        let key = if pa < pb { (pa, pb) } else { (pb, pa) };
        let g = match self.xors.get(&key) {
            Some(&g) => g,
            None => {
                let g = self.gate();
                let (x, y) = key;
                self.solver.add_clause_reuse(&mut vec![!g, x, y]);
                self.solver.add_clause_reuse(&mut vec![!g, !x, !y]);
                self.solver.add_clause_reuse(&mut vec![g, !x, y]);
                self.solver.add_clause_reuse(&mut vec![g, x, !y]);
                self.xors.insert(key, g);
                g
            }
        };
        if flip {
            !g
        } else {
            g
        }
    }

    /// `if cond { a } else { b }`.
    pub fn mux(&mut self, cond: Lit, a: Lit, b: Lit) -> Lit {
        match self.known(cond) {
            Some(true) => return a,
            Some(false) => return b,
            None => {}
        }
        if a == b {
            return a;
        }
        match (self.known(a), self.known(b)) {
            (Some(true), _) => return self.or(cond, b),
            (Some(false), _) => return self.and(!cond, b),
            (_, Some(true)) => return self.or(!cond, a),
            (_, Some(false)) => return self.and(cond, a),
            _ => {}
        }
        if a == !b {
            // `cond ? a : !a` is `!(cond ^ a)`.
            return !self.xor(cond, a);
        }
        // Normalise to a positive condition: `!c ? a : b` is `c ? b : a`.
        let (cond, a, b) = if cond.sign() {
            (cond, a, b)
        } else {
            (!cond, b, a)
        };
        if let Some(&gate) = self.muxes.get(&(cond, a, b)) {
            return gate;
        }
        let g = self.gate();
        self.solver.add_clause_reuse(&mut vec![!cond, !a, g]);
        self.solver.add_clause_reuse(&mut vec![!cond, a, !g]);
        self.solver.add_clause_reuse(&mut vec![cond, !b, g]);
        self.solver.add_clause_reuse(&mut vec![cond, b, !g]);
        // Implied by the four above. They let the solver fix the output
        // from both inputs before it chooses the condition.
        self.solver.add_clause_reuse(&mut vec![!a, !b, g]);
        self.solver.add_clause_reuse(&mut vec![a, b, !g]);
        self.muxes.insert((cond, a, b), g);
        g
    }

    pub fn and_all(&mut self, lits: &[Lit]) -> Lit {
        lits.iter()
            .fold(self.constant(true), |acc, &lit| self.and(acc, lit))
    }

    pub fn or_all(&mut self, lits: &[Lit]) -> Lit {
        lits.iter()
            .fold(self.constant(false), |acc, &lit| self.or(acc, lit))
    }

    // ---- words ----

    pub fn word(&self, value: u64) -> Word {
        std::array::from_fn(|i| self.constant(value >> i & 1 == 1))
    }

    /// A word whose low `width` bits are inputs and whose other bits are 0.
    pub fn input_word(&mut self, width: usize) -> Word {
        let mut word = self.word(0);
        for bit in word.iter_mut().take(width) {
            *bit = self.input();
        }
        word
    }

    /// A 0/1 word holding `bit`.
    pub fn bit_word(&self, bit: Lit) -> Word {
        let mut word = self.word(0);
        word[0] = bit;
        word
    }

    pub fn word_value(&self, word: &Word) -> u64 {
        word.iter()
            .enumerate()
            .fold(0, |acc, (i, &bit)| acc | u64::from(self.value(bit)) << i)
    }

    pub fn bitwise(&mut self, a: &Word, b: &Word, op: fn(&mut Circuit, Lit, Lit) -> Lit) -> Word {
        let mut out = *a;
        for i in 0..64 {
            out[i] = op(self, a[i], b[i]);
        }
        out
    }

    pub fn eq(&mut self, a: &Word, b: &Word) -> Lit {
        let mut same = Vec::with_capacity(64);
        for i in 0..64 {
            same.push(!self.xor(a[i], b[i]));
        }
        self.and_all(&same)
    }

    /// Unsigned `a < b`.
    pub fn ult(&mut self, a: &Word, b: &Word) -> Lit {
        let mut less = self.constant(false);
        for i in 0..64 {
            let differ = self.xor(a[i], b[i]);
            less = self.mux(differ, b[i], less);
        }
        less
    }

    /// Signed `a < b`: flipping the sign bits maps signed onto unsigned order.
    pub fn slt(&mut self, a: &Word, b: &Word) -> Lit {
        let (mut x, mut y) = (*a, *b);
        x[63] = !x[63];
        y[63] = !y[63];
        self.ult(&x, &y)
    }

    /// Signed `a <= b`.
    pub fn sle(&mut self, a: &Word, b: &Word) -> Lit {
        !self.slt(b, a)
    }

    fn add_carry(&mut self, a: &Word, b: &Word, carry_in: Lit) -> Word {
        let mut sum = *a;
        let mut carry = carry_in;
        for i in 0..64 {
            let half = self.xor(a[i], b[i]);
            sum[i] = self.xor(half, carry);
            let generate = self.and(a[i], b[i]);
            let propagate = self.and(half, carry);
            carry = self.or(generate, propagate);
        }
        sum
    }

    /// Replaces `raw` by the bound of the sign of `a` where `overflow` holds.
    fn saturate(&mut self, raw: Word, a: &Word, overflow: Lit) -> Word {
        let mut out = raw;
        for i in 0..64 {
            let bound = if i == 63 { a[63] } else { !a[63] };
            out[i] = self.mux(overflow, bound, raw[i]);
        }
        out
    }

    /// Saturating signed addition.
    pub fn add(&mut self, a: &Word, b: &Word) -> Word {
        let zero = self.constant(false);
        let raw = self.add_carry(a, b, zero);
        let same_sign = !self.xor(a[63], b[63]);
        let sign_changed = self.xor(raw[63], a[63]);
        let overflow = self.and(same_sign, sign_changed);
        self.saturate(raw, a, overflow)
    }

    /// Saturating signed subtraction.
    pub fn sub(&mut self, a: &Word, b: &Word) -> Word {
        let one = self.constant(true);
        let inverted: Word = std::array::from_fn(|i| !b[i]);
        let raw = self.add_carry(a, &inverted, one);
        let different_sign = self.xor(a[63], b[63]);
        let sign_changed = self.xor(raw[63], a[63]);
        let overflow = self.and(different_sign, sign_changed);
        self.saturate(raw, a, overflow)
    }

    /// Logical shift right by `b & 63`.
    pub fn shr(&mut self, a: &Word, b: &Word) -> Word {
        let mut value = *a;
        for (stage, &amount) in b.iter().take(6).enumerate() {
            let distance = 1 << stage;
            let mut shifted = value;
            for i in 0..64 {
                let source = if i + distance < 64 {
                    value[i + distance]
                } else {
                    self.constant(false)
                };
                shifted[i] = self.mux(amount, source, value[i]);
            }
            value = shifted;
        }
        value
    }

    pub fn select(&mut self, cond: Lit, a: &Word, b: &Word) -> Word {
        let mut out = *a;
        for i in 0..64 {
            out[i] = self.mux(cond, a[i], b[i]);
        }
        out
    }

    pub fn nonzero(&mut self, a: &Word) -> Lit {
        self.or_all(a)
    }

    pub fn popcount(&mut self, a: &Word) -> Word {
        let mut count = self.word(0);
        for &bit in a {
            let mut carry = bit;
            for slot in count.iter_mut().take(7) {
                let next = self.xor(*slot, carry);
                carry = self.and(*slot, carry);
                *slot = next;
            }
        }
        count
    }
}
