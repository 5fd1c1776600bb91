//! Reading one value of an object, whichever language the config wrote it in: a path, the fast
//! one, or a CEL expression (`{ expr = "…" }`, an `expr` key) where a path is not enough.
//!
//! Every key that takes a path for a value or a label (metrics, statesets, aggregates, derived
//! metrics) is compiled to a [`Reader`], so the two languages behave alike wherever they are
//! written: an expression's `null` is a path reaching nothing, and its result goes through the
//! same conversions.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::extract::label_value;
use crate::expr::{Expr, ExprError, Input};
use crate::path::Path;
use crate::value;

/// Where a value comes from.
#[derive(Debug, Clone)]
pub(super) enum Reader {
    /// A path from the object (or from the item of an `each`).
    Path(Path),
    /// A CEL expression; shared, as the entry's labels are copied to its ages.
    Expr(Arc<Expr>),
}

/// What a reader reached.
pub(super) enum Reached<'j> {
    /// Nothing: the path reached nothing, or the expression gave `null`.
    None,
    /// One value.
    One(Cow<'j, Value>),
    /// Several values (paths only).
    Many(usize),
}

impl Reader {
    /// The value reached from `item` of the input's object (`item` is `None` outside an
    /// `each`); an error only when an expression failed.
    pub(super) fn reach<'j>(
        &self,
        input: &Input<'j>,
        item: Option<&'j Value>,
    ) -> Result<Reached<'j>, Failed<'_>> {
        match self {
            Reader::Path(path) => {
                let object = input.object();
                let mut first = None;
                let mut count = 0;
                path.visit_in(object, item.unwrap_or(object), &mut |value| {
                    count += 1;
                    first.get_or_insert(value);
                });
                Ok(match (first, count) {
                    (Some(value), 1) => Reached::One(Cow::Borrowed(value)),
                    (Some(_), _) => Reached::Many(count),
                    (None, _) => Reached::None,
                })
            }
            Reader::Expr(expr) => Ok(match expr.eval(input, item) {
                Ok(Value::Null) => Reached::None,
                Ok(value) => Reached::One(Cow::Owned(value)),
                Err(error) => return Err(Failed { expr, error }),
            }),
        }
    }

    /// The value as label text: every value a path reaches, joined with `,`; empty when nothing
    /// is reached.
    pub(super) fn text<'j>(
        &self,
        input: &Input<'j>,
        item: Option<&'j Value>,
    ) -> Result<String, Failed<'_>> {
        match self {
            Reader::Path(path) => {
                let object = input.object();
                Ok(label_value(path, object, item.unwrap_or(object)))
            }
            Reader::Expr(expr) => match expr.eval(input, item) {
                Ok(value) => Ok(value::label_text(&value)),
                Err(error) => Err(Failed { expr, error }),
            },
        }
    }
}

impl Reader {
    /// Every value reached, each as label text: every value a path reaches, or each element
    /// of the list an expression gives (its value alone when it is no list; nothing for `null`).
    pub(super) fn texts<'j>(
        &self,
        input: &Input<'j>,
        item: Option<&'j Value>,
    ) -> Result<Vec<String>, Failed<'_>> {
        match self {
            Reader::Path(path) => {
                let object = input.object();
                let mut texts = Vec::new();
                path.visit_in(object, item.unwrap_or(object), &mut |value| {
                    texts.push(value::label_text(value));
                });
                Ok(texts)
            }
            Reader::Expr(expr) => match expr.eval(input, item) {
                Ok(Value::Null) => Ok(Vec::new()),
                Ok(Value::Array(items)) => Ok(items.iter().map(value::label_text).collect()),
                Ok(value) => Ok(vec![value::label_text(&value)]),
                Err(error) => Err(Failed { expr, error }),
            },
        }
    }
}

/// An expression that failed, and why.
#[derive(Debug)]
pub(super) struct Failed<'r> {
    pub(super) expr: &'r Expr,
    pub(super) error: ExprError,
}

impl fmt::Display for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reader::Path(path) => write!(f, "{path}"),
            Reader::Expr(expr) => f.write_str(expr.source()),
        }
    }
}
