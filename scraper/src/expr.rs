//! CEL expressions where the path language is not enough: a metric's value (`expr`), a label
//! value (`{ expr = "…" }`) and a filter (`where = "…"`).
//!
//! # Why the `cel` crate (cel-rust), 0.15
//!
//! CEL is the expression language Kubernetes users already write (CRD validation rules,
//! ValidatingAdmissionPolicy), and `cel` 0.15 is the maintained Rust implementation: it parses to
//! an AST once ([`cel::Env::compile`]), reports parse errors with a line and column inside the
//! expression, and evaluates against any number of bound variables. Built here without default
//! features but with `regex` (`matches`) and `chrono` (`timestamp()`, `duration()` and their
//! accessors); the strings extension adds `lowerAscii`, `upperAscii`, `trim`, `split`,
//! `replace`, `substring`, `indexOf`, `join`. On top of it Periscope adds `quantity(string)`, a
//! Kubernetes quantity read as a double (Kubernetes' own `quantity()` returns a Quantity object
//! with methods such as `asApproximateFloat()`; here it is the float itself).
//!
//! What it lacks, which users of Kubernetes' CEL would miss: no type checker (a misspelled field
//! or a type mismatch is found at evaluation, not at `periscope check`; Periscope itself refuses
//! a variable other than `object` and `item` at check time), no runtime cost limit
//! (so Periscope bounds the cost itself, below), no Kubernetes library functions beyond those
//! above (`isSorted`, `url()`, `ip()`, `cidr()`, Quantity methods, `semver()`), none of the
//! `math`, `sets`, `lists`, `base64` or `optional` extensions, no two-variable comprehensions
//! (`all(i, x, …)`) and no `sortBy`. Optional field selection (`object.?status.?nodeName`,
//! `.orValue('')`), `format()`, `reverse()`, `int(timestamp(…))` and the timestamp and duration
//! accessors do work.
//!
//! # Binding
//!
//! The object is bound as `object`; inside a metric's `each`, the current element is bound as
//! `item` as well (the path language's relative paths start at it). The objects the entry's joins
//! found (`[[resources.joins]]`) are bound as `joins`, a map from join name to object without
//! the joins that found nothing: `joins.claim.spec.volumeMode`, `has(joins.claim)`. An
//! expression that fails while a join it names found nothing gives `null` (a filter keeps
//! nothing), as a path into that join reaches nothing. A join's own `where` sees the candidate
//! as `joined`. Any other variable is a compile error ([`Scope`]).
//!
//! The JSON object becomes CEL values only as far as an expression reads it: one that reads
//! only `item` converts nothing of the object; one that reads the object only by field names
//! (`object.status.phase`, `has(object.spec.x)`, `object.?metadata.?labels[?"app"]`) converts
//! those fields alone; one that reads it whole (`type(object)`, `object.map(…)`, an index
//! computed at run time) or reads `joins` converts it once, for every such expression of the
//! object. An expression without variables (`"kubevirt.io"`) is computed once at compile time.
//!
//! # Cost bound
//!
//! CEL has no loops, but a comprehension (`all`, `exists`, `filter`, `map`, `exists_one`)
//! walks a list or map, and nested comprehensions multiply. The crate has no cost limit at run
//! time, so every expression counts, once at compile time, how deeply its comprehensions nest
//! (`depth`), and before an evaluation the largest list or map of the bound values (`n`) is
//! measured: when `n` to the power `depth` exceeds [`WALK_LIMIT`], the evaluation is refused with
//! [`ExprError::TooCostly`] instead of run. An expression without comprehensions is bounded by
//! its own size.
//!
//! # Results
//!
//! A result becomes JSON and then goes through the same conversions as a value the path language
//! reached ([`crate::value`]): `null` is "reached nothing", numbers, strings and booleans are
//! themselves, a timestamp is its RFC 3339 text, a duration its seconds, lists and maps their
//! JSON.

use std::ops::Range;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{EntryExpr, Expr as Ast};
use std::cell::OnceCell;
use std::collections::HashMap;

use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;
use cel::objects::Key;
use cel::{Context, Env, ExecutionError, IdedExpr, Program};
use serde_json::Value as Json;

use crate::objects::keep::Keep;

/// The most elements the comprehensions of one evaluation may walk: the largest list or map
/// bound, to the power of how deeply the expression's comprehensions nest.
pub const WALK_LIMIT: u64 = 1_000_000;

/// The name the object is bound to.
pub const OBJECT: &str = "object";
/// The name the current element of `each` is bound to.
pub const ITEM: &str = "item";
/// The name the joined objects are bound to, by join name.
pub const JOINS: &str = "joins";
/// The name a join's candidate is bound to in the join's `where`.
pub const JOINED: &str = "joined";
/// What [`Expr::field_reads`] gives for an index computed at run time (`m[item.name]`).
pub const ANY_FIELD: &str = "*";

/// The environment every expression compiles and runs in: the standard library, the strings
/// extension and `quantity()`.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // Both only fail on an overload declared twice, which a fixed set of declarations never does.
    env.add_extension(cel::extensions::strings)
        .expect("the strings extension declares each overload once");
    cel::add_overload!(env, fn quantity: (CelString) -> Result<CelDouble>)
        .expect("quantity() is declared once");
    Arc::new(env)
});

fn quantity(text: &CelString<'_>) -> Result<CelDouble, ExecutionError> {
    crate::value::parse_quantity(text.as_ref())
        .map(CelDouble::from)
        .ok_or_else(|| {
            ExecutionError::function_error("quantity", format!("{:?} is not a quantity", &**text))
        })
}

/// A compiled expression.
#[derive(Debug)]
pub struct Expr {
    source: String,
    program: Program,
    /// How deeply its comprehensions nest (0 without any).
    depth: u32,
    /// The joins it reads by name (`joins.name`).
    joins: Vec<String>,
    /// Its result when it reads no variable (`"kubevirt.io"`, `60 * 60`): computed once, here,
    /// so that a constant costs nothing per object.
    constant: Option<Json>,
    /// How it sees the object: not at all, only the fields it selects, or whole.
    binding: Binding,
}

/// How much of the object an expression binds.
#[derive(Debug)]
enum Binding {
    /// It reads neither `object` nor `joins` (only `item` or `joined`): nothing is converted.
    Nothing,
    /// It reads only these fields of `object`, by name (`object.status.phase`,
    /// `object.?metadata.?labels["app"]`): they alone are converted, at each evaluation.
    Fields(Keep),
    /// It reads `object` whole (`type(object)`, `object.map(…)`, an index computed at run
    /// time) or `joins`: the object is converted once per [`Input`], shared by every such
    /// expression.
    Whole,
}

/// An expression that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprCompileError {
    /// The byte offset inside the expression text where the problem is, when the crate gives one.
    pub offset: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// Why an evaluation gave no value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExprError {
    /// The expression failed (no such key, no matching overload, division by zero…).
    #[error("expression failed: {0}")]
    Failed(String),
    /// The evaluation was refused: its comprehensions could walk too many elements.
    #[error(
        "expression refused: comprehensions nested {depth} deep over a list or map of {largest} elements could walk more than {WALK_LIMIT}"
    )]
    TooCostly {
        /// The largest list or map bound.
        largest: usize,
        /// How deeply the comprehensions nest.
        depth: u32,
    },
    /// The result has no JSON form (bytes, a type, a function, an infinite double).
    #[error("expression gave {0}, which is not a value")]
    NotAValue(String),
    /// A filter's result is not a boolean.
    #[error("a `where` expression must give a boolean, not {0}")]
    NotABool(String),
}

impl Expr {
    /// Compiles `source`, in which only the names of `scope` are bound: any other variable is an
    /// error here rather than at every evaluation.
    pub fn compile(source: &str, scope: Scope) -> Result<Expr, ExprCompileError> {
        let program = ENV.compile(source).map_err(|errors| {
            let first = errors.errors.first();
            ExprCompileError {
                offset: first.and_then(|e| offset_of(source, e.pos)),
                message: first.map_or_else(
                    || "the expression does not parse".to_owned(),
                    |e| format!("the expression does not parse: {}", e.msg),
                ),
            }
        })?;
        let mut free = Vec::new();
        free_variables(program.expression(), &mut Vec::new(), &mut free);
        let binding = if free.iter().any(|(_, name)| name == JOINS) {
            Binding::Whole
        } else if free.iter().any(|(_, name)| name == OBJECT) {
            let mut keep = Keep::default();
            let mut reads = Vec::new();
            field_reads(program.expression(), OBJECT, &mut reads);
            keep.add_reads(reads);
            if keep.is_whole() {
                Binding::Whole
            } else {
                Binding::Fields(keep)
            }
        } else {
            Binding::Nothing
        };
        // Without variables the result is the same for every object. One that fails is left to
        // fail at each evaluation, as any other, so that its problem is reported where it is.
        let constant = if free.is_empty() {
            program
                .execute(&Context::with_env(Arc::clone(&ENV)))
                .ok()
                .and_then(|value| to_json(&value).ok())
        } else {
            None
        };
        if let Some((id, name)) = free.into_iter().find(|(_, name)| !scope.binds(name)) {
            let offset = program
                .source_info()
                .offset_for(id)
                .and_then(|(start, _)| usize::try_from(start).ok())
                .map(|start| {
                    source
                        .char_indices()
                        .nth(start)
                        .map_or(source.len(), |(i, _)| i)
                });
            return Err(ExprCompileError {
                offset,
                message: format!("unknown variable `{name}`: {}", scope.describe()),
            });
        }
        let depth = nesting(program.expression());
        let mut reads = Vec::new();
        field_reads(program.expression(), JOINS, &mut reads);
        let mut joins: Vec<String> = reads
            .into_iter()
            .filter_map(|(fields, _)| fields.into_iter().next())
            .collect();
        joins.sort();
        joins.dedup();
        Ok(Expr {
            source: source.to_owned(),
            program,
            depth,
            joins,
            constant,
            binding,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates with the input's object bound as `object` (and `item` inside an `each`),
    /// giving the result as JSON: `null` when it is CEL's `null`.
    ///
    /// An expression that fails while a join it reads found nothing gives `null`, as a path
    /// into that join reaches nothing.
    pub fn eval<'j>(&self, input: &Input<'j>, item: Option<&'j Json>) -> Result<Json, ExprError> {
        match self.eval_with(input, item.map(|item| (ITEM, item))) {
            Err(ExprError::Failed(_)) if self.reads_missing_join(input) => Ok(Json::Null),
            result => result,
        }
    }

    /// Whether the expression reads a join that found nothing for the input's object.
    fn reads_missing_join(&self, input: &Input<'_>) -> bool {
        let found = input.object().get(crate::path::JOINS);
        self.joins
            .iter()
            .any(|name| found.and_then(|found| found.get(name)).is_none())
    }

    /// Evaluates a join's `where` for one candidate: the input's object bound as `object`, the
    /// candidate as `joined`.
    pub fn keeps_joined<'j>(&self, input: &Input<'j>, joined: &'j Json) -> Result<bool, ExprError> {
        match self.eval_with(input, Some((JOINED, joined)))? {
            Json::Bool(keep) => Ok(keep),
            other => Err(ExprError::NotABool(other.to_string())),
        }
    }

    /// Evaluates with the input's object (and joins) bound, and `extra` as well.
    fn eval_with<'j>(
        &self,
        input: &Input<'j>,
        extra: Option<(&str, &'j Json)>,
    ) -> Result<Json, ExprError> {
        if let Some(constant) = &self.constant {
            return Ok(constant.clone());
        }
        let mut largest = 0;
        let extra = extra.map(|(name, value)| (name, to_cel(value, &mut largest)));
        let mut context = match &self.binding {
            Binding::Whole => {
                let (root, object_largest) = input.bound();
                largest = largest.max(*object_largest);
                root.new_inner_scope()
            }
            Binding::Fields(keep) => {
                let mut context = Context::with_env(Arc::clone(&ENV));
                let object = to_cel_kept(input.object(), keep, &mut largest);
                context.add_variable_as_val(OBJECT, object);
                context
            }
            Binding::Nothing => Context::with_env(Arc::clone(&ENV)),
        };
        self.check_cost(largest)?;
        if let Some((name, value)) = extra {
            context.add_variable_as_val(name, value);
        }
        let result = self
            .program
            .execute(&context)
            .map_err(|e| ExprError::Failed(e.to_string()))?;
        to_json(&result)
    }

    /// Evaluates a filter: whether the object (or item) is kept. A filter that fails while a
    /// join it reads found nothing keeps nothing.
    pub fn keeps<'j>(&self, input: &Input<'j>, item: Option<&'j Json>) -> Result<bool, ExprError> {
        match self.eval(input, item)? {
            Json::Bool(keep) => Ok(keep),
            Json::Null if self.reads_missing_join(input) => Ok(false),
            other => Err(ExprError::NotABool(other.to_string())),
        }
    }

    /// What the expression reads of the variable `name`: for each place it is used, the fields
    /// selected after it with `.field`, `.?field`, `["field"]` or an index computed at run time
    /// ([`ANY_FIELD`]), up to the first anything else, and whether only the presence of the last one is tested (`has(v.a.b)`). An empty
    /// list of fields means it reads the variable whole.
    pub fn field_reads(&self, name: &str) -> Vec<(Vec<String>, bool)> {
        let mut out = Vec::new();
        field_reads(self.program.expression(), name, &mut out);
        out
    }

    fn check_cost(&self, largest: usize) -> Result<(), ExprError> {
        if self.depth == 0 {
            return Ok(());
        }
        let walked = (largest as u64).checked_pow(self.depth);
        match walked {
            Some(walked) if walked <= WALK_LIMIT => Ok(()),
            _ => Err(ExprError::TooCostly {
                largest,
                depth: self.depth,
            }),
        }
    }
}

/// Which names an expression may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `object` only: an entry's `where` and labels, a metric without `each`.
    Object,
    /// `object` and `item`: a metric with `each`.
    Item,
    /// `object` and `joined`: a join's `where`.
    Joined,
}

/// The type names an expression may mention (`type(x) == string`).
const TYPE_NAMES: [&str; 11] = [
    "bool",
    "bytes",
    "double",
    "duration",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "timestamp",
    "uint",
];

impl Scope {
    fn binds(self, name: &str) -> bool {
        name == OBJECT
            || TYPE_NAMES.contains(&name)
            || match self {
                Scope::Object => name == JOINS,
                Scope::Item => name == JOINS || name == ITEM,
                Scope::Joined => name == JOINED,
            }
    }

    fn describe(self) -> &'static str {
        match self {
            Scope::Object => {
                "the object is `object`, its joined objects `joins` (`item` exists only in a metric with `each`)"
            }
            Scope::Item => {
                "the object is `object`, its joined objects `joins` and the element of `each` is `item`"
            }
            Scope::Joined => "the object is `object` and the join's candidate is `joined`",
        }
    }
}

/// Collects what `expr` reads of the variable `name` (see [`Expr::field_reads`]). A
/// comprehension variable of the same name is not told apart: it only makes more read.
fn field_reads(expr: &IdedExpr, name: &str, out: &mut Vec<(Vec<String>, bool)>) {
    if let Ast::Select(select) = &expr.expr
        && select.test
        && let Some(mut fields) = selected_fields(&select.operand, name)
    {
        index_reads(&select.operand, name, out);
        fields.push(select.field.clone());
        out.push((fields, true));
        return;
    }
    if let Some(fields) = selected_fields(expr, name) {
        index_reads(expr, name, out);
        out.push((fields, false));
        return;
    }
    // `type(v.a)`: the kind of value `v.a` is, which needs nothing inside it.
    if let Ast::Call(call) = &expr.expr
        && call.func_name == "type"
        && call.target.is_none()
        && let [value] = call.args.as_slice()
        && let Some(fields) = selected_fields(value, name)
    {
        index_reads(value, name, out);
        out.push((fields, true));
        return;
    }
    // `k in v.a`: whether `v.a` has the key `k`, which needs no more of what it maps to.
    if let Ast::Call(call) = &expr.expr
        && call.func_name == cel::common::ast::operators::IN
        && let [key, map] = call.args.as_slice()
        && let Some(mut fields) = selected_fields(map, name)
    {
        field_reads(key, name, out);
        index_reads(map, name, out);
        fields.push(ANY_FIELD.to_owned());
        out.push((fields, true));
        return;
    }
    match &expr.expr {
        Ast::Comprehension(c) => {
            for part in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                field_reads(part, name, out);
            }
        }
        Ast::Call(call) => {
            if let Some(target) = &call.target {
                field_reads(target, name, out);
            }
            for arg in &call.args {
                field_reads(arg, name, out);
            }
        }
        Ast::List(list) => {
            for element in &list.elements {
                field_reads(element, name, out);
            }
        }
        Ast::Map(map) => {
            for entry in &map.entries {
                match &entry.expr {
                    EntryExpr::MapEntry(e) => {
                        field_reads(&e.key, name, out);
                        field_reads(&e.value, name, out);
                    }
                    EntryExpr::StructField(f) => field_reads(&f.value, name, out),
                }
            }
        }
        Ast::Select(select) => field_reads(&select.operand, name, out),
        _ => {}
    }
}

/// What the indexes computed at run time along a chain of selections (`v.a[object.spec.key]`)
/// read of `name`.
fn index_reads(expr: &IdedExpr, name: &str, out: &mut Vec<(Vec<String>, bool)>) {
    match &expr.expr {
        Ast::Select(select) => index_reads(&select.operand, name, out),
        Ast::Call(call) if call.target.is_none() && call.args.len() == 2 && is_selection(call) => {
            index_reads(&call.args[0], name, out);
            field_reads(&call.args[1], name, out);
        }
        _ => {}
    }
}

/// Whether a call selects a field or an index: `a.?b`, `a[b]`, `a[?b]`.
fn is_selection(call: &cel::common::ast::CallExpr) -> bool {
    [
        cel::common::ast::operators::OPT_SELECT,
        cel::common::ast::operators::INDEX,
        cel::common::ast::operators::OPT_INDEX,
    ]
    .contains(&call.func_name.as_str())
}

/// When `expr` is the variable `name` followed by field selections only, those fields.
fn selected_fields(expr: &IdedExpr, name: &str) -> Option<Vec<String>> {
    let (operand, field) = match &expr.expr {
        Ast::Ident(ident) => return (ident == name).then(Vec::new),
        Ast::Select(select) => (&*select.operand, select.field.clone()),
        Ast::Call(call) if call.target.is_none() && call.args.len() == 2 && is_selection(call) => {
            let field = match &call.args[1].expr {
                Ast::Literal(cel::common::ast::LiteralValue::String(field)) => {
                    let text: &str = field.as_ref();
                    text.to_owned()
                }
                // An index computed at run time: any field.
                _ => ANY_FIELD.to_owned(),
            };
            (&call.args[0], field)
        }
        _ => return None,
    };
    let mut fields = selected_fields(operand, name)?;
    fields.push(field);
    Some(fields)
}

/// The variables `expr` reads that no comprehension around them binds, with their node ids.
fn free_variables(expr: &IdedExpr, bound: &mut Vec<String>, out: &mut Vec<(u64, String)>) {
    match &expr.expr {
        Ast::Ident(name) if !bound.contains(name) => out.push((expr.id, name.clone())),
        Ast::Comprehension(c) => {
            free_variables(&c.iter_range, bound, out);
            let before = bound.len();
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.iter().cloned());
            bound.push(c.accu_var.clone());
            for part in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                free_variables(part, bound, out);
            }
            bound.truncate(before);
        }
        Ast::Call(call) => {
            if let Some(target) = &call.target {
                free_variables(target, bound, out);
            }
            for arg in &call.args {
                free_variables(arg, bound, out);
            }
        }
        Ast::List(list) => {
            for element in &list.elements {
                free_variables(element, bound, out);
            }
        }
        Ast::Map(map) => {
            for entry in &map.entries {
                match &entry.expr {
                    EntryExpr::MapEntry(e) => {
                        free_variables(&e.key, bound, out);
                        free_variables(&e.value, bound, out);
                    }
                    EntryExpr::StructField(f) => free_variables(&f.value, bound, out),
                }
            }
        }
        Ast::Select(select) => free_variables(&select.operand, bound, out),
        _ => {}
    }
}

/// An object as expressions see it: converted to CEL values on the first evaluation, once,
/// however many expressions read it.
pub struct Input<'j> {
    object: &'j Json,
    /// The context binding `object`, and the size of the largest list or map in it.
    bound: OnceCell<(Context<'j, 'j>, usize)>,
}

impl<'j> Input<'j> {
    /// The input of `object`; nothing is converted until an expression is evaluated.
    pub fn new(object: &'j Json) -> Input<'j> {
        Input {
            object,
            bound: OnceCell::new(),
        }
    }

    /// The object, as JSON.
    pub fn object(&self) -> &'j Json {
        self.object
    }

    fn bound(&self) -> &(Context<'j, 'j>, usize) {
        self.bound.get_or_init(|| {
            let mut largest = 0;
            let mut context = Context::with_env(Arc::clone(&ENV));
            // The joined objects the pipeline put in the object are `joins`, not a field.
            let joins = self.object.get(crate::path::JOINS);
            let object = match (self.object, joins) {
                (Json::Object(fields), Some(_)) => {
                    largest = fields.len() - 1;
                    let fields: HashMap<CelMapKey<'j>, Box<dyn Val + 'j>> = fields
                        .iter()
                        .filter(|(k, _)| k.as_str() != crate::path::JOINS)
                        .map(|(k, v)| (CelMapKey::from(k.as_str()), to_cel(v, &mut largest)))
                        .collect();
                    Box::new(CelMap::from(fields))
                }
                _ => to_cel(self.object, &mut largest),
            };
            context.add_variable_as_val(OBJECT, object);
            let joins = joins.map_or_else(
                || Box::new(CelMap::from(HashMap::new())) as Box<dyn Val + 'j>,
                |joins| to_cel(joins, &mut largest),
            );
            context.add_variable_as_val(JOINS, joins);
            (context, largest)
        })
    }
}

/// The byte offset of a (1-based line, 1-based column in characters) position in `source`.
fn offset_of(source: &str, (line, column): (isize, isize)) -> Option<usize> {
    let line = usize::try_from(line).ok()?.checked_sub(1)?;
    let column = usize::try_from(column).ok()?.saturating_sub(1);
    let start: usize = source.split_inclusive('\n').take(line).map(str::len).sum();
    let text = source.get(start..)?;
    let within = text
        .char_indices()
        .nth(column)
        .map_or(text.len(), |(i, _)| i);
    Some((start + within).min(source.len()))
}

/// How deeply the comprehensions of `expr` nest: a comprehension's own range is walked once,
/// its step once per element.
fn nesting(expr: &IdedExpr) -> u32 {
    match &expr.expr {
        Ast::Comprehension(c) => {
            let inner = [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result]
                .into_iter()
                .map(nesting)
                .max()
                .unwrap_or(0);
            nesting(&c.iter_range).max(1 + inner)
        }
        Ast::Call(call) => call
            .target
            .iter()
            .map(|t| nesting(t))
            .chain(call.args.iter().map(nesting))
            .max()
            .unwrap_or(0),
        Ast::List(list) => list.elements.iter().map(nesting).max().unwrap_or(0),
        Ast::Map(map) => map
            .entries
            .iter()
            .map(|entry| match &entry.expr {
                EntryExpr::MapEntry(e) => nesting(&e.key).max(nesting(&e.value)),
                EntryExpr::StructField(f) => nesting(&f.value),
            })
            .max()
            .unwrap_or(0),
        Ast::Select(select) => nesting(&select.operand),
        _ => 0,
    }
}

/// The CEL value of a JSON value, borrowing its strings; `largest` keeps the size of the
/// largest list or map met.
fn to_cel<'j>(json: &'j Json, largest: &mut usize) -> Box<dyn Val + 'j> {
    match json {
        Json::Null => Box::new(CelNull),
        Json::Bool(b) => Box::new(CelBool::from(*b)),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Box::new(CelInt::from(i)),
            (None, Some(u)) => Box::new(CelUInt::from(u)),
            _ => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        Json::String(s) => Box::new(CelString::from(s.as_str())),
        Json::Array(items) => {
            *largest = (*largest).max(items.len());
            let items: Vec<Box<dyn Val + 'j>> =
                items.iter().map(|item| to_cel(item, largest)).collect();
            Box::new(CelList::from(items))
        }
        Json::Object(fields) => {
            *largest = (*largest).max(fields.len());
            let fields: HashMap<CelMapKey<'j>, Box<dyn Val + 'j>> = fields
                .iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), to_cel(v, largest)))
                .collect();
            Box::new(CelMap::from(fields))
        }
    }
}

/// The CEL value of the fields `keep` names of a JSON value (all of it where `keep` keeps it
/// whole, or where it is no map: selecting a field of it then fails as it would on the whole).
/// The joined objects the pipeline put in the object are never a field of it.
fn to_cel_kept<'j>(json: &'j Json, keep: &Keep, largest: &mut usize) -> Box<dyn Val + 'j> {
    match json {
        Json::Object(fields) if !keep.is_whole() => {
            let kept: HashMap<CelMapKey<'j>, Box<dyn Val + 'j>> = keep
                .fields()
                .filter(|(name, _)| *name != crate::path::JOINS)
                .filter_map(|(name, keep)| {
                    let (name, value) = fields.get_key_value(name)?;
                    Some((
                        CelMapKey::from(name.as_str()),
                        to_cel_kept(value, keep, largest),
                    ))
                })
                .collect();
            *largest = (*largest).max(kept.len());
            Box::new(CelMap::from(kept))
        }
        _ => to_cel(json, largest),
    }
}

/// The JSON form of a result, for the conversions of [`crate::value`].
fn to_json(value: &cel::Value) -> Result<Json, ExprError> {
    Ok(match value {
        cel::Value::Null => Json::Null,
        cel::Value::Bool(b) => Json::Bool(*b),
        cel::Value::Int(i) => Json::from(*i),
        cel::Value::UInt(u) => Json::from(*u),
        cel::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .ok_or_else(|| ExprError::NotAValue(f.to_string()))?,
        cel::Value::String(s) => Json::String(s.as_str().to_owned()),
        cel::Value::Timestamp(t) => Json::String(t.to_rfc3339()),
        cel::Value::Duration(d) => {
            let seconds = d.num_milliseconds() as f64 / 1000.0;
            serde_json::Number::from_f64(seconds)
                .map(Json::Number)
                .ok_or_else(|| ExprError::NotAValue(format!("{d}")))?
        }
        cel::Value::List(items) => {
            Json::Array(items.iter().map(to_json).collect::<Result<Vec<_>, _>>()?)
        }
        cel::Value::Map(map) => {
            let mut fields: Vec<(String, Json)> = Vec::with_capacity(map.map.len());
            for (key, value) in map.map.iter() {
                let key = match key {
                    Key::String(s) => s.as_str().to_owned(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                fields.push((key, to_json(value)?));
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(fields.into_iter().collect())
        }
        other => return Err(ExprError::NotAValue(format!("{other:?}"))),
    })
}

/// Where a compile error points in the config: inside the quoted expression when the text
/// between the quotes is the expression itself (no escapes), otherwise the whole value.
pub fn error_span(value_span: Range<usize>, source: &str, offset: Option<usize>) -> Range<usize> {
    match offset {
        // A one-line string without escapes: the quotes and the text, nothing else.
        Some(offset) if value_span.len() == source.len() + 2 => {
            let at = value_span.start + 1 + offset;
            at..(at + 1).min(value_span.end - 1).max(at)
        }
        _ => value_span,
    }
}

#[cfg(test)]
mod tests;
