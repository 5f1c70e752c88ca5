//! Checks that every engine reaches the same outcome on the benchmark inputs
//! and on a sweep of the input space, and that authflow's typed binding and
//! decision kernel allocate nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use authflow_peers::{
    benchmark_cases, decide_interned, decide_strings, intern, owned_input, reference_outcome,
    Authflow, Cedar, Cel, Kind, Outcome, RegoInterpreter, RegoVm, Request,
};
use authflow_runtime::Backend;

/// Counts the heap allocations of the current thread, so that tests running
/// on other threads do not disturb a count.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged. The
// thread-local counter has a const initializer and no destructor, so
// touching it never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        System.dealloc(pointer, layout)
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        System.realloc(pointer, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Every engine, prepared once.
struct Engines {
    native: Authflow,
    bytecode: Authflow,
    cedar: Cedar,
    rego_interpreter: RegoInterpreter,
    rego_vm: RegoVm,
    cel: Cel,
}

impl Engines {
    fn new() -> Engines {
        Engines {
            native: Authflow::new(Backend::Native),
            bytecode: Authflow::new(Backend::Bytecode),
            cedar: Cedar::new(),
            rego_interpreter: RegoInterpreter::new(),
            rego_vm: RegoVm::new(),
            cel: Cel::new(),
        }
    }

    /// Returns each engine's name and outcome for one request.
    fn outcomes(&mut self, request: &Request) -> Vec<(&'static str, Outcome)> {
        let mut native_input = self.native.input(request);
        let mut bytecode_input = self.bytecode.input(request);
        // The typed builder binds the record that the JSON request binds.
        let mut json_input = self.native.input(request);
        json_input.flow = self.native.bind_json(request, &mut json_input.scratch);
        assert_eq!(
            (native_input.flow, &native_input.scratch.record),
            (json_input.flow, &json_input.scratch.record),
            "typed and JSON binding of {request:?}"
        );
        let cedar_input = self.cedar.input(request);
        let rego_input = authflow_peers::rego_input(request);
        let cel_input = self.cel.input(request);
        vec![
            ("authflow native", self.native.decide(&mut native_input)),
            (
                "authflow native, JSON input",
                self.native.decide(&mut json_input),
            ),
            (
                "authflow bytecode",
                self.bytecode.decide(&mut bytecode_input),
            ),
            ("Cedar one query", self.cedar.decide_one_query(&cedar_input)),
            (
                "Cedar two queries",
                self.cedar.decide_two_queries(&cedar_input),
            ),
            (
                "Rego interpreter",
                self.rego_interpreter.decide(&rego_input),
            ),
            ("Rego VM", self.rego_vm.decide(&rego_input)),
            ("CEL", self.cel.decide(&cel_input)),
            ("Rust interned", decide_interned(&intern(request))),
            ("Rust strings", decide_strings(&owned_input(request))),
        ]
    }
}

#[test]
fn benchmark_cases_agree() {
    let mut engines = Engines::new();
    for case in benchmark_cases() {
        assert_eq!(
            reference_outcome(&case.request),
            case.expected,
            "{}: reference",
            case.name
        );
        for (engine, outcome) in engines.outcomes(&case.request) {
            assert_eq!(outcome, case.expected, "{}: {engine}", case.name);
        }
    }
}

const FACTORS: [&str; 3] = ["password", "totp", "webauthn"];

/// Lists every subset of the three factors, one per bit mask.
fn factor_subsets() -> Vec<Vec<&'static str>> {
    (0..8u32)
        .map(|mask| {
            FACTORS
                .iter()
                .enumerate()
                .filter(|(bit, _)| mask & (1 << bit) != 0)
                .map(|(_, factor)| *factor)
                .collect()
        })
        .collect()
}

#[test]
fn input_sweep_agrees() {
    let mut engines = Engines::new();
    let role_sets: [&[&str]; 2] = [&["dev"], &["admin", "dev"]];
    let subsets = factor_subsets();
    let mut checked = 0;
    let mut seen = std::collections::HashSet::new();
    for kind in [Kind::Human, Kind::Service, Kind::Agent] {
        for roles in role_sets {
            for zone in ["internal", "partner", "public"] {
                for resource in ["admin_console", "mail"] {
                    for risk in [0, 59, 60, 89, 90, 100] {
                        for factors in &subsets {
                            let request = Request {
                                kind,
                                id: "p-1",
                                roles,
                                zone,
                                resource,
                                risk,
                                factors,
                            };
                            let expected = reference_outcome(&request);
                            seen.insert(expected);
                            for (engine, outcome) in engines.outcomes(&request) {
                                assert_eq!(outcome, expected, "{engine} on {request:?}");
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 3 * 2 * 3 * 2 * 6 * 8);
    assert_eq!(seen.len(), 3, "the sweep reaches all three outcomes");
}

#[test]
fn authflow_kernel_allocates_nothing() {
    for backend in [Backend::Native, Backend::Bytecode] {
        let authflow = Authflow::new(backend);
        for case in benchmark_cases() {
            let mut input = authflow.input(&case.request);
            let before = allocations();
            let outcome = authflow.decide(&mut input);
            let after = allocations();
            assert_eq!(outcome, case.expected, "{} with {backend:?}", case.name);
            assert_eq!(after - before, 0, "{} with {backend:?}", case.name);
        }
    }
}

#[test]
fn authflow_typed_binding_allocates_nothing() {
    for backend in [Backend::Native, Backend::Bytecode] {
        let authflow = Authflow::new(backend);
        for case in benchmark_cases() {
            let mut input = authflow.input(&case.request);
            let before = allocations();
            input.flow = authflow.bind(&case.request, &mut input.scratch);
            let outcome = authflow.decide(&mut input);
            let after = allocations();
            assert_eq!(outcome, case.expected, "{} with {backend:?}", case.name);
            assert_eq!(after - before, 0, "{} with {backend:?}", case.name);
        }
    }
}
