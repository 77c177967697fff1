//! Kubernetes label selectors (`matchLabels` and `matchExpressions`), shared by
//! NetworkPolicy and ContainerPolicy: reading them and matching labels against them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::yaml::{At, DResult};

/// A label selector: every `matchLabels` entry AND every `matchExpressions` requirement must
/// hold. `{}` selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelector {
    /// `key: value` pairs that must all be present.
    pub match_labels: Vec<(String, String)>,
    /// Requirements, ANDed.
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// How the label is tested.
    pub operator: Operator,
    /// The values (`In`, `NotIn`: at least one; `Exists`, `DoesNotExist`: none), ORed.
    pub values: Vec<String>,
}

/// A `matchExpressions` operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    /// The label is present with one of the values.
    In,
    /// The label is absent, or present with none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// Reads a `LabelSelector` (`matchLabels`, `matchExpressions`).
pub(crate) fn parse_selector(at: At<'_>) -> DResult<LabelSelector> {
    let mut f = at.fields()?;
    let labels = f.take("matchLabels");
    let expressions = f.take("matchExpressions");
    f.finish(&["matchLabels", "matchExpressions"])?;
    let mut selector = LabelSelector::default();
    if let Some(l) = &labels {
        selector.match_labels = l.at().string_map()?;
    }
    if let Some(e) = &expressions {
        for (item, path) in e.at().items()? {
            selector
                .match_expressions
                .push(parse_requirement(item.with_path(&path))?);
        }
    }
    Ok(selector)
}

/// Reads one `matchExpressions` entry (shared by every selector that takes them).
pub(crate) fn parse_requirement(at: At<'_>) -> DResult<Requirement> {
    let mut f = at.fields()?;
    let key_f = f.require("key")?;
    let op_f = f.require("operator")?;
    let values_f = f.take("values");
    f.finish(&["key", "operator", "values"])?;
    let key = key_f.at().string()?;
    if key.is_empty() {
        return Err(key_f.at().error("label key must not be empty"));
    }
    let operator = match op_f.at().string()?.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(op_f
                .at()
                .error(format!("unknown operator `{other}`"))
                .with_help("expected one of `In`, `NotIn`, `Exists`, `DoesNotExist`"));
        }
    };
    let values = match &values_f {
        Some(v) => v.at().strings()?,
        None => Vec::new(),
    };
    match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            let d = match &values_f {
                Some(v) => v
                    .at()
                    .error(format!("operator `{operator:?}` needs at least one value")),
                None => at.error(format!(
                    "operator `{operator:?}` needs at least one value in `values`"
                )),
            };
            return Err(d);
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            let d = match &values_f {
                Some(v) => v.at(),
                None => at,
            }
            .error(format!("operator `{operator:?}` takes no values"))
            .with_help("remove `values`");
            return Err(d);
        }
        _ => {}
    }
    Ok(Requirement {
        key,
        operator,
        values: values.into_iter().map(|s| s.value).collect(),
    })
}

/// Something with labels: a pod, or a namespace.
/// Anything that answers label look-ups (pod labels, namespace labels).
pub(crate) trait Labels {
    /// The value of a label, if present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl LabelSelector {
    /// Whether the labels satisfy every entry and requirement.
    pub(crate) fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.label(k) == Some(v.as_str()))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.label(&self.key);
        let listed = value.is_some_and(|v| self.values.iter().any(|x| x == v));
        match self.operator {
            Operator::In => listed,
            Operator::NotIn => !listed,
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}
