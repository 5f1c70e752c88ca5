//! One step-up decision in authflow, Cedar, Rego (regorus interpreter and
//! bytecode VM), CEL and hand-written Rust, for side-by-side benchmarks.
//!
//! The decision: deny when risk >= 90. On resource `admin_console`, agents
//! are denied, services are allowed only from zone `internal`, humans without
//! role `admin` are denied, and a human admin is allowed with `password`
//! plus `webauthn` (risk >= 60) or plus `totp` or `webauthn` (risk < 60),
//! else steps up. On any other resource, `password` allows, else step up.
//!
//! Every engine is prepared once by its `new` function. Each engine then
//! turns a borrowed [`Request`] into its own input form (`input`) and decides
//! on that prebuilt input (`decide`), so the benchmarks can time the two
//! parts together or apart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use authflow_runtime::program::{out, Decision, Program, Verdict};
use authflow_runtime::{Backend, Policy, Scratch};

pub const STEPUP_FLOW: &str = include_str!("../policies/stepup.flow");
pub const CEDAR_SCHEMA: &str = include_str!("../policies/stepup.cedarschema");
pub const CEDAR_ONE_QUERY: &str = include_str!("../policies/stepup_1q.cedar");
pub const CEDAR_TWO_QUERIES: &str = include_str!("../policies/stepup_2q.cedar");
pub const REGO_POLICY: &str = include_str!("../policies/stepup.rego");
pub const REGO_QUERY: &str = "data.authn.decision";
pub const CEL_EXPRESSION: &str = include_str!("../policies/stepup.cel");

/// The time of every request, and of every factor one minute before it.
const NOW: &str = "2026-12-04T10:00:00Z";
const FACTOR_AT: &str = "2026-12-04T09:59:00Z";

/// The three outcomes of the step-up decision. authflow calls `StepUp`
/// `challenge`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Allow,
    Deny,
    StepUp,
}

impl Outcome {
    /// Maps the outcome string of the Rego, CEL and Cedar encodings.
    pub fn from_name(name: &str) -> Option<Outcome> {
        match name {
            "allow" => Some(Outcome::Allow),
            "deny" => Some(Outcome::Deny),
            "step_up" => Some(Outcome::StepUp),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Human,
    Service,
    Agent,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Human => "human",
            Kind::Service => "service",
            Kind::Agent => "agent",
        }
    }

    fn cedar_type(self) -> &'static str {
        match self {
            Kind::Human => "App::Human",
            Kind::Service => "App::Service",
            Kind::Agent => "App::Agent",
        }
    }
}

/// One authentication request, borrowed by every engine's input builder.
/// `zone` is one of `internal`, `partner`, `public`, because authflow types
/// it as an enum. authflow reads `zone` only for services and `roles` only
/// for humans, because its principal types declare no other attributes.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub kind: Kind,
    pub id: &'a str,
    pub roles: &'a [&'a str],
    pub zone: &'a str,
    pub resource: &'a str,
    pub risk: i64,
    pub factors: &'a [&'a str],
}

/// A named request with the outcome that every engine must reach.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub name: &'static str,
    pub request: Request<'static>,
    pub expected: Outcome,
}

/// Lists the six benchmark inputs: one per branch of the decision, across
/// all three outcomes.
pub fn benchmark_cases() -> Vec<Case> {
    let human = |id, roles, resource, risk, factors| Request {
        kind: Kind::Human,
        id,
        roles,
        zone: "partner",
        resource,
        risk,
        factors,
    };
    vec![
        Case {
            name: "admin_allow",
            request: human(
                "u-1",
                &["admin"],
                "admin_console",
                10,
                &["password", "totp"],
            ),
            expected: Outcome::Allow,
        },
        Case {
            name: "admin_step_up",
            request: human(
                "u-1",
                &["admin"],
                "admin_console",
                70,
                &["password", "totp"],
            ),
            expected: Outcome::StepUp,
        },
        Case {
            name: "non_admin_deny",
            request: human("u-2", &["dev"], "admin_console", 10, &["password", "totp"]),
            expected: Outcome::Deny,
        },
        Case {
            name: "service_allow",
            request: Request {
                kind: Kind::Service,
                id: "svc-1",
                roles: &[],
                zone: "internal",
                resource: "admin_console",
                risk: 10,
                factors: &[],
            },
            expected: Outcome::Allow,
        },
        Case {
            name: "agent_deny",
            request: Request {
                kind: Kind::Agent,
                id: "agent-1",
                roles: &[],
                zone: "partner",
                resource: "admin_console",
                risk: 10,
                factors: &["password"],
            },
            expected: Outcome::Deny,
        },
        Case {
            name: "other_resource_step_up",
            request: human("u-2", &["dev"], "mail", 10, &[]),
            expected: Outcome::StepUp,
        },
    ]
}

/// Decides a request by the decision's definition, as the reference for the
/// agreement test. Same logic as [`decide_strings`], written once more over
/// the borrowed request so that a slip in one copy shows as a disagreement.
pub fn reference_outcome(request: &Request) -> Outcome {
    let has = |factor: &str| request.factors.contains(&factor);
    if request.risk >= 90 {
        return Outcome::Deny;
    }
    if request.resource != "admin_console" {
        return if has("password") {
            Outcome::Allow
        } else {
            Outcome::StepUp
        };
    }
    match request.kind {
        Kind::Agent => Outcome::Deny,
        Kind::Service if request.zone == "internal" => Outcome::Allow,
        Kind::Service => Outcome::Deny,
        Kind::Human if !request.roles.contains(&"admin") => Outcome::Deny,
        Kind::Human => {
            let second = if request.risk >= 60 {
                has("webauthn")
            } else {
                has("totp") || has("webauthn")
            };
            if has("password") && second {
                Outcome::Allow
            } else {
                Outcome::StepUp
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Hand-written Rust over interned ids and bitsets.

const PASSWORD: u64 = 1 << 0;
const TOTP: u64 = 1 << 1;
const WEBAUTHN: u64 = 1 << 2;
const ROLE_ADMIN: u64 = 1 << 0;
const RESOURCE_ADMIN_CONSOLE: u32 = 0;
const RESOURCE_OTHER: u32 = 1;

/// The request with strings replaced by ids and sets by bitsets.
#[derive(Clone, Copy, Debug)]
pub struct Interned {
    kind: Kind,
    roles: u64,
    internal_zone: bool,
    resource: u32,
    risk: i64,
    factors: u64,
}

/// Interns a request. Strings that the decision never tests map to no bit.
pub fn intern(request: &Request) -> Interned {
    let mut factors = 0;
    for factor in request.factors {
        factors |= match *factor {
            "password" => PASSWORD,
            "totp" => TOTP,
            "webauthn" => WEBAUTHN,
            _ => 0,
        };
    }
    let mut roles = 0;
    for role in request.roles {
        if *role == "admin" {
            roles |= ROLE_ADMIN;
        }
    }
    Interned {
        kind: request.kind,
        roles,
        internal_zone: request.zone == "internal",
        resource: if request.resource == "admin_console" {
            RESOURCE_ADMIN_CONSOLE
        } else {
            RESOURCE_OTHER
        },
        risk: request.risk,
        factors,
    }
}

/// Decides an interned request with ordinary branches.
#[inline(never)]
pub fn decide_interned(input: &Interned) -> Outcome {
    if input.risk >= 90 {
        return Outcome::Deny;
    }
    if input.resource != RESOURCE_ADMIN_CONSOLE {
        return if input.factors & PASSWORD != 0 {
            Outcome::Allow
        } else {
            Outcome::StepUp
        };
    }
    match input.kind {
        Kind::Agent => Outcome::Deny,
        Kind::Service if input.internal_zone => Outcome::Allow,
        Kind::Service => Outcome::Deny,
        Kind::Human if input.roles & ROLE_ADMIN == 0 => Outcome::Deny,
        Kind::Human => {
            let second = if input.risk >= 60 {
                WEBAUTHN
            } else {
                TOTP | WEBAUTHN
            };
            if input.factors & PASSWORD != 0 && input.factors & second != 0 {
                Outcome::Allow
            } else {
                Outcome::StepUp
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Hand-written Rust over owned strings.

/// The request as owned strings, as a service would hold it after
/// deserializing.
#[derive(Clone, Debug)]
pub struct OwnedInput {
    kind: String,
    roles: Vec<String>,
    zone: String,
    resource: String,
    risk: i64,
    factors: Vec<String>,
}

pub fn owned_input(request: &Request) -> OwnedInput {
    OwnedInput {
        kind: request.kind.name().to_string(),
        roles: request.roles.iter().map(|r| r.to_string()).collect(),
        zone: request.zone.to_string(),
        resource: request.resource.to_string(),
        risk: request.risk,
        factors: request.factors.iter().map(|f| f.to_string()).collect(),
    }
}

/// Decides an owned-string request with string comparisons.
#[inline(never)]
pub fn decide_strings(input: &OwnedInput) -> Outcome {
    let has = |factor: &str| input.factors.iter().any(|f| f == factor);
    if input.risk >= 90 {
        return Outcome::Deny;
    }
    if input.resource != "admin_console" {
        return if has("password") {
            Outcome::Allow
        } else {
            Outcome::StepUp
        };
    }
    match input.kind.as_str() {
        "service" if input.zone == "internal" => Outcome::Allow,
        "human" if input.roles.iter().any(|r| r == "admin") => {
            let second = if input.risk >= 60 {
                has("webauthn")
            } else {
                has("totp") || has("webauthn")
            };
            if has("password") && second {
                Outcome::Allow
            } else {
                Outcome::StepUp
            }
        }
        _ => Outcome::Deny,
    }
}

// ---------------------------------------------------------------------------
// authflow.

/// Compiles authflow source; panics with the diagnostics when it does not
/// compile, because every benchmark policy must.
pub fn compile_flow(name: &str, source: &str) -> Program {
    let result = authflow_compiler::compile(name, source, &mut authflow_compiler::NoImports);
    match result.program {
        Some(program) => program,
        None => panic!("{name} does not compile: {:?}", result.diagnostics),
    }
}

/// The step-up policy loaded with one authflow backend.
pub struct Authflow {
    pub policy: Policy,
    /// `NOW` and `FACTOR_AT` in microseconds since the epoch.
    now: i64,
    factor_at: i64,
}

/// A request bound into authflow's input record: the kernel's whole input.
pub struct AuthflowInput {
    pub flow: usize,
    pub scratch: Scratch,
}

impl Authflow {
    pub fn new(backend: Backend) -> Authflow {
        let program = compile_flow("stepup.flow", STEPUP_FLOW);
        let policy = Policy::with_backend(program, backend).expect("the step-up program verifies");
        assert_eq!(
            policy.backend(),
            backend,
            "backend {backend:?} is not available"
        );
        let time = |text| authflow_runtime::value::parse_time(text).expect("a valid time");
        Authflow {
            policy,
            now: time(NOW),
            factor_at: time(FACTOR_AT),
        }
    }

    /// Builds the JSON request of authflow's input format.
    pub fn request_json(request: &Request) -> serde_json::Value {
        let principal = match request.kind {
            Kind::Human => {
                serde_json::json!({"kind": "human", "id": request.id, "roles": request.roles})
            }
            Kind::Service => {
                serde_json::json!({"kind": "service", "id": request.id, "zone": request.zone})
            }
            Kind::Agent => serde_json::json!({"kind": "agent", "id": request.id}),
        };
        let factors: Vec<serde_json::Value> = request
            .factors
            .iter()
            .map(|f| serde_json::json!({"factor": f, "at": FACTOR_AT}))
            .collect();
        serde_json::json!({
            "event": "login",
            "principal": principal,
            "context": {"resource": request.resource, "risk": request.risk},
            "session": {"factors": factors},
            "now": NOW,
        })
    }

    /// Validates a request, folds it into facts and binds them into a new
    /// input record. This is the per-request work outside the kernel.
    pub fn input(&self, request: &Request) -> AuthflowInput {
        let mut scratch = self.policy.scratch();
        let flow = self.bind(request, &mut scratch);
        AuthflowInput { flow, scratch }
    }

    /// Like [`Authflow::input`], into an existing scratch; returns the flow.
    /// Binds the borrowed request with the typed request builder, which
    /// validates it like JSON input and allocates nothing.
    pub fn bind(&self, request: &Request, scratch: &mut Scratch) -> usize {
        use authflow_runtime::typed::Input;
        let mut builder = self.policy.request(scratch, self.now);
        builder
            .event("login")
            .principal(request.kind.name(), request.id)
            .context("resource", Input::Text(request.resource))
            .context("risk", Input::Int(request.risk));
        match request.kind {
            Kind::Human => {
                builder.principal_attribute("roles", Input::Texts(request.roles));
            }
            Kind::Service => {
                builder.principal_attribute("zone", Input::Text(request.zone));
            }
            Kind::Agent => {}
        }
        for factor in request.factors {
            builder.session_factor(factor, self.factor_at);
        }
        builder.finish().expect("the request is valid")
    }

    /// Like [`Authflow::bind`], from the request's JSON form, validated and
    /// folded into facts first: the path of a host that receives JSON.
    pub fn bind_json(&self, request: &Request, scratch: &mut Scratch) -> usize {
        let json = Self::request_json(request);
        let program = self.policy.program();
        let validated =
            authflow_runtime::bind::request(program, &json, 0).expect("the request is valid");
        let facts = authflow_runtime::bind::Facts::new(program, validated);
        let _strings = self.policy.bind(&facts, scratch);
        facts.request.flow
    }

    /// Runs the decision kernel on a bound input. Allocates nothing.
    pub fn decide(&self, input: &mut AuthflowInput) -> Outcome {
        self.policy.decide(input.flow, &mut input.scratch);
        match Verdict(input.scratch.outcome[out::VERDICT as usize]).decision() {
            Some(Decision::Allow) => Outcome::Allow,
            Some(Decision::Deny) => Outcome::Deny,
            Some(Decision::Challenge) => Outcome::StepUp,
            other => panic!("the step-up policy decided {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Cedar.

/// The Cedar schema with both policy encodings, parsed and validated.
pub struct Cedar {
    pub schema: cedar_policy::Schema,
    pub one_query: cedar_policy::PolicySet,
    pub two_queries: cedar_policy::PolicySet,
    authorizer: cedar_policy::Authorizer,
    access: cedar_policy::EntityUid,
    step_up: cedar_policy::EntityUid,
}

/// A Cedar input: the entities and one request per action.
pub struct CedarInput {
    pub entities: cedar_policy::Entities,
    pub access: cedar_policy::Request,
    pub step_up: cedar_policy::Request,
}

/// Parses a Cedar policy set and validates it against the schema in strict
/// mode; panics on any error, because every benchmark policy must validate.
pub fn cedar_policies(schema: &cedar_policy::Schema, text: &str) -> cedar_policy::PolicySet {
    let policies = cedar_policy::PolicySet::from_str(text).expect("the Cedar policies parse");
    let validator = cedar_policy::Validator::new(schema.clone());
    let result = validator.validate(&policies, cedar_policy::ValidationMode::Strict);
    assert!(
        result.validation_passed(),
        "Cedar validation failed: {result}"
    );
    policies
}

pub fn cedar_schema(text: &str) -> cedar_policy::Schema {
    let (schema, _warnings) =
        cedar_policy::Schema::from_cedarschema_str(text).expect("the Cedar schema parses");
    schema
}

fn cedar_uid(type_name: &str, id: &str) -> cedar_policy::EntityUid {
    let type_name = cedar_policy::EntityTypeName::from_str(type_name).expect("valid type name");
    cedar_policy::EntityUid::from_type_name_and_id(type_name, cedar_policy::EntityId::new(id))
}

impl Cedar {
    pub fn new() -> Cedar {
        let schema = cedar_schema(CEDAR_SCHEMA);
        let one_query = cedar_policies(&schema, CEDAR_ONE_QUERY);
        let two_queries = cedar_policies(&schema, CEDAR_TWO_QUERIES);
        Cedar {
            schema,
            one_query,
            two_queries,
            authorizer: cedar_policy::Authorizer::new(),
            access: cedar_uid("App::Action", "access"),
            step_up: cedar_uid("App::Action", "step_up"),
        }
    }

    /// Builds the principal and resource entities and one request per
    /// action, each validated against the schema.
    pub fn input(&self, request: &Request) -> CedarInput {
        use cedar_policy::RestrictedExpression as Expr;
        let principal = cedar_uid(request.kind.cedar_type(), request.id);
        let resource = cedar_uid("App::Resource", request.resource);
        let roles = Expr::new_set(
            request
                .roles
                .iter()
                .map(|r| Expr::new_string(r.to_string())),
        );
        let attributes = HashMap::from([("roles".to_string(), roles)]);
        let entity = cedar_policy::Entity::new(principal.clone(), attributes, HashSet::new())
            .expect("valid principal entity");
        let resource_entity = cedar_policy::Entity::new_no_attrs(resource.clone(), HashSet::new());
        let entities =
            cedar_policy::Entities::from_entities([entity, resource_entity], Some(&self.schema))
                .expect("the entities conform to the schema");
        let context = || {
            let factors = Expr::new_set(
                request
                    .factors
                    .iter()
                    .map(|f| Expr::new_string(f.to_string())),
            );
            cedar_policy::Context::from_pairs([
                ("risk".to_string(), Expr::new_long(request.risk)),
                ("factors".to_string(), factors),
                (
                    "zone".to_string(),
                    Expr::new_string(request.zone.to_string()),
                ),
                ("hour".to_string(), Expr::new_long(10)),
            ])
            .expect("valid context")
        };
        let query = |action: &cedar_policy::EntityUid| {
            cedar_policy::Request::new(
                principal.clone(),
                action.clone(),
                resource.clone(),
                context(),
                Some(&self.schema),
            )
            .expect("the request conforms to the schema")
        };
        CedarInput {
            access: query(&self.access),
            step_up: query(&self.step_up),
            entities,
        }
    }

    /// Decides with one `access` query: a deny is a deny, and an allow is a
    /// step up unless some determining policy has `@outcome("allow")`.
    pub fn decide_one_query(&self, input: &CedarInput) -> Outcome {
        let response =
            self.authorizer
                .is_authorized(&input.access, &self.one_query, &input.entities);
        if response.decision() == cedar_policy::Decision::Deny {
            return Outcome::Deny;
        }
        let allowed = response
            .diagnostics()
            .reason()
            .any(|id| self.one_query.annotation(id, "outcome") == Some("allow"));
        if allowed {
            Outcome::Allow
        } else {
            Outcome::StepUp
        }
    }

    /// Decides with an `access` query and, when it denies, a `step_up` query.
    pub fn decide_two_queries(&self, input: &CedarInput) -> Outcome {
        let access =
            self.authorizer
                .is_authorized(&input.access, &self.two_queries, &input.entities);
        if access.decision() == cedar_policy::Decision::Allow {
            return Outcome::Allow;
        }
        let step_up =
            self.authorizer
                .is_authorized(&input.step_up, &self.two_queries, &input.entities);
        if step_up.decision() == cedar_policy::Decision::Allow {
            Outcome::StepUp
        } else {
            Outcome::Deny
        }
    }
}

impl Default for Cedar {
    fn default() -> Cedar {
        Cedar::new()
    }
}

// ---------------------------------------------------------------------------
// Rego.

/// Builds the Rego input document.
pub fn rego_input(request: &Request) -> regorus::Value {
    let strings = |items: &[&str]| {
        regorus::Value::from(
            items
                .iter()
                .map(|s| regorus::Value::from(*s))
                .collect::<Vec<_>>(),
        )
    };
    let mut fields = BTreeMap::new();
    fields.insert(
        regorus::Value::from("kind"),
        regorus::Value::from(request.kind.name()),
    );
    fields.insert(regorus::Value::from("roles"), strings(request.roles));
    fields.insert(
        regorus::Value::from("zone"),
        regorus::Value::from(request.zone),
    );
    fields.insert(
        regorus::Value::from("resource"),
        regorus::Value::from(request.resource),
    );
    fields.insert(
        regorus::Value::from("risk"),
        regorus::Value::from(request.risk),
    );
    fields.insert(regorus::Value::from("factors"), strings(request.factors));
    regorus::Value::from(fields)
}

fn rego_outcome(value: &regorus::Value) -> Outcome {
    let name = value.as_string().expect("the Rego decision is a string");
    Outcome::from_name(name).unwrap_or_else(|| panic!("unknown Rego decision {name}"))
}

/// The step-up policy in regorus's tree-walking interpreter.
pub struct RegoInterpreter {
    engine: regorus::Engine,
}

impl RegoInterpreter {
    pub fn new() -> RegoInterpreter {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy("stepup.rego".to_string(), REGO_POLICY.to_string())
            .expect("the Rego policy parses");
        RegoInterpreter { engine }
    }

    /// Sets the input and evaluates the query. The input is a reference-counted
    /// value, so the clone copies no document.
    pub fn decide(&mut self, input: &regorus::Value) -> Outcome {
        self.engine.set_input(input.clone());
        let value = self
            .engine
            .eval_rule(REGO_QUERY.to_string())
            .expect("the Rego query evaluates");
        rego_outcome(&value)
    }
}

impl Default for RegoInterpreter {
    fn default() -> RegoInterpreter {
        RegoInterpreter::new()
    }
}

/// The step-up policy compiled to regorus's register VM (RVM) bytecode.
pub struct RegoVm {
    vm: regorus::rvm::RegoVM,
}

/// Compiles the Rego policy to an RVM program with the query as its entry
/// point.
pub fn rego_program() -> regorus::Rc<regorus::rvm::Program> {
    let mut engine = regorus::Engine::new();
    engine
        .add_policy("stepup.rego".to_string(), REGO_POLICY.to_string())
        .expect("the Rego policy parses");
    let entry: regorus::Rc<str> = regorus::Rc::from(REGO_QUERY);
    let compiled = engine
        .compile_with_entrypoint(&entry)
        .expect("the Rego policy compiles");
    regorus::languages::rego::compiler::Compiler::compile_from_policy(&compiled, &[REGO_QUERY])
        .expect("the Rego policy compiles to RVM bytecode")
}

impl RegoVm {
    pub fn new() -> RegoVm {
        let mut vm = regorus::rvm::RegoVM::new();
        vm.load_program(rego_program());
        RegoVm { vm }
    }

    /// Sets the input and runs the program from its entry point.
    pub fn decide(&mut self, input: &regorus::Value) -> Outcome {
        self.vm.set_input(input.clone());
        let value = self.vm.execute().expect("the RVM program runs");
        rego_outcome(&value)
    }
}

impl Default for RegoVm {
    fn default() -> RegoVm {
        RegoVm::new()
    }
}

// ---------------------------------------------------------------------------
// CEL.

/// The step-up expression compiled by cel-interpreter.
pub struct Cel {
    program: cel_interpreter::Program,
}

impl Cel {
    pub fn new() -> Cel {
        let program =
            cel_interpreter::Program::compile(CEL_EXPRESSION).expect("the CEL expression parses");
        Cel { program }
    }

    /// Builds the CEL activation: one variable per request field.
    pub fn input(&self, request: &Request) -> cel_interpreter::Context<'static> {
        use cel_interpreter::Value;
        let strings = |items: &[&str]| {
            Value::List(std::sync::Arc::new(
                items.iter().map(|s| Value::from(s.to_string())).collect(),
            ))
        };
        let mut context = cel_interpreter::Context::default();
        context.add_variable_from_value("kind", Value::from(request.kind.name().to_string()));
        context.add_variable_from_value("roles", strings(request.roles));
        context.add_variable_from_value("zone", Value::from(request.zone.to_string()));
        context.add_variable_from_value("resource", Value::from(request.resource.to_string()));
        context.add_variable_from_value("risk", Value::Int(request.risk));
        context.add_variable_from_value("factors", strings(request.factors));
        context
    }

    pub fn decide(&self, input: &cel_interpreter::Context) -> Outcome {
        match self
            .program
            .execute(input)
            .expect("the CEL expression evaluates")
        {
            cel_interpreter::Value::String(name) => {
                Outcome::from_name(&name).unwrap_or_else(|| panic!("unknown CEL outcome {name}"))
            }
            other => panic!("the CEL expression returned {other:?}"),
        }
    }
}

impl Default for Cel {
    fn default() -> Cel {
        Cel::new()
    }
}

// ---------------------------------------------------------------------------
// Scaling: N guards in authflow and N policies in Cedar.

/// A Cedar policy set of `guards` forbid policies that mirror
/// `authflow_benches::policy_with_guards`, then one permit on `password`.
pub fn cedar_policies_with_guards(guards: usize) -> String {
    let mut text = String::new();
    for i in 0..guards {
        text.push_str(&format!(
            "forbid (principal, action, resource) when {{ context.risk == {risk} && \
             (resource == App::Resource::\"r{i}\" || principal.roles.contains(\"g{i}\")) }};\n",
            risk = 1000 + i,
        ));
    }
    text.push_str(
        "permit (principal, action == App::Action::\"access\", resource) \
         when { context.factors.contains(\"password\") };\n",
    );
    text
}

/// The request of `authflow_benches::GUARDED_REQUEST`, which passes every
/// guard and is allowed.
pub fn guarded_request() -> Request<'static> {
    Request {
        kind: Kind::Human,
        id: "u-1",
        roles: &["dev"],
        zone: "partner",
        resource: "mail",
        risk: 5,
        factors: &["password"],
    }
}
