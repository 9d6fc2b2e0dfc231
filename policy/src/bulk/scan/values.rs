//! Reading a plain entry's values into its rule, as `toml` would give them to serde:
//! decoded strings and booleans, `ports` elements, each spanned like `toml` spans it.

use std::borrow::Cow;
use std::ops::Range;

use toml::Spanned;
use toml_parser::decoder::{IntegerRadix, ScalarKind};
use toml_parser::{ErrorSink, Span};

use super::{Block, Item, List, Scanner, Value};
use crate::schema::{PortValue, RawRule};

impl<'i> Scanner<'i> {
    /// Puts `key = value` into block `i`'s rule; `false` when no plain entry has it.
    pub(super) fn fill(
        &mut self,
        i: usize,
        key: Item,
        value: Value,
        error: &mut dyn ErrorSink,
    ) -> bool {
        let name = self.key(key, error);
        let Block { list, index, .. } = self.blocks[i];
        let mut rule = {
            let rules = match list {
                List::Allow => &mut self.allow,
                List::Deny => &mut self.deny,
            };
            std::mem::replace(rules[index].get_mut(), empty_rule())
        };
        let filled = match (name.as_ref(), value) {
            ("cidr", Value::Scalar(item)) if rule.cidr.is_none() => {
                self.string(item, error).map(|s| rule.cidr = Some(s))
            }
            ("domain", Value::Scalar(item)) if rule.domain.is_none() => {
                self.string(item, error).map(|s| rule.domain = Some(s))
            }
            ("proto", Value::Scalar(item)) if rule.proto.is_none() => {
                self.string(item, error).map(|s| rule.proto = Some(s))
            }
            ("inspect", Value::Scalar(item)) if rule.inspect.is_none() => {
                self.boolean(item, error).map(|b| rule.inspect = Some(b))
            }
            (
                "ports",
                Value::Array {
                    span,
                    nested: false,
                },
            ) if rule.ports.is_none() => self.ports(span, error).map(|p| rule.ports = Some(p)),
            _ => None,
        };
        let rules = match list {
            List::Allow => &mut self.allow,
            List::Deny => &mut self.deny,
        };
        *rules[index].get_mut() = rule;
        filled.is_some()
    }

    fn scalar(&self, item: Item, error: &mut dyn ErrorSink) -> Option<(ScalarKind, Cow<'i, str>)> {
        let raw = self.raw(item)?;
        let mut out = Cow::Borrowed("");
        let kind = raw.decode_scalar(&mut out, error);
        Some((kind, out))
    }

    fn string(&self, item: Item, error: &mut dyn ErrorSink) -> Option<Spanned<String>> {
        match self.scalar(item, error)? {
            (ScalarKind::String, s) => Some(Spanned::new(range(item.0), s.into_owned())),
            _ => None,
        }
    }

    fn boolean(&self, item: Item, error: &mut dyn ErrorSink) -> Option<Spanned<bool>> {
        match self.scalar(item, error)? {
            (ScalarKind::Boolean(b), _) => Some(Spanned::new(range(item.0), b)),
            _ => None,
        }
    }

    /// The array in `items` as `toml` gives it to `PortValue`: strings, and decimal
    /// integers that fit an `i64` (others go to `toml`, which has its own ways with them).
    fn ports(
        &self,
        whole: Span,
        error: &mut dyn ErrorSink,
    ) -> Option<Spanned<Vec<Spanned<PortValue>>>> {
        let mut out = Vec::with_capacity(self.items.len());
        for &item in &self.items {
            let value = match self.scalar(item, error)? {
                (ScalarKind::String, s) => PortValue::Text(s.into_owned()),
                (ScalarKind::Integer(IntegerRadix::Dec), digits) => {
                    PortValue::Number(digits.parse().ok()?)
                }
                _ => return None,
            };
            out.push(Spanned::new(range(item.0), value));
        }
        Some(Spanned::new(range(whole), out))
    }
}

fn range(span: Span) -> Range<usize> {
    span.start()..span.end()
}

pub(super) fn empty_rule() -> RawRule {
    RawRule {
        cidr: None,
        domain: None,
        ports: None,
        proto: None,
        inspect: None,
        http: None,
    }
}
