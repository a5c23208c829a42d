//! The built-in `filter` stage: keeps the records that match a condition (`keep_if`) or drops
//! the ones that do (`drop_if`).

use crate::config::reader::{Diagnostics, Section};
use crate::core::dead_letter::DeadLetter;
use crate::core::matcher::Condition;
use crate::core::record::Batch;
use crate::stages::Stage;
use crate::stages::builtin::parse_condition;

/// Settings of a filter stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterConfig {
    /// The condition.
    pub condition: Condition,
    /// Keep matching records (`keep_if`) when true, drop them (`drop_if`) when false.
    pub keep_matching: bool,
}

impl FilterConfig {
    /// Reads a `kind = "filter"` stage table: exactly one of `keep_if = {..}` or `drop_if = {..}`.
    pub fn parse(s: &mut Section<'_>, d: &mut Diagnostics) -> Option<FilterConfig> {
        let keep = s.opt_table(d, "keep_if");
        let drop = s.opt_table(d, "drop_if");
        let (mut t, keep_matching) = match (keep, drop) {
            (Some(t), None) => (t, true),
            (None, Some(t)) => (t, false),
            _ => {
                d.error(
                    &s.spot(),
                    "a filter needs exactly one of `keep_if` or `drop_if`",
                );
                return None;
            }
        };
        let condition = parse_condition(&mut t, d);
        t.finish(d);
        Some(FilterConfig {
            condition: condition?,
            keep_matching,
        })
    }
}

/// The filter stage.
#[derive(Debug)]
pub struct Filter {
    cfg: FilterConfig,
}

impl Filter {
    /// A filter with these settings.
    pub fn new(cfg: FilterConfig) -> Filter {
        Filter { cfg }
    }
}

impl Stage for Filter {
    fn process(
        &mut self,
        batch: &mut Batch,
        _dead: &mut Vec<DeadLetter>,
    ) -> Result<(), crate::stages::StageError> {
        let keep_matching = self.cfg.keep_matching;
        let cond = &self.cfg.condition;
        batch.retain(|_, rec| cond.matches_record(&rec) == keep_matching);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::jsonpath::JsonPath;
    use crate::core::matcher::Test;
    use crate::core::record::{Origin, PositionBase, Span};
    use bytes::Bytes;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn keeps_or_drops_matching_records() {
        let data = Bytes::from_static(b"{\"t\":1}\n{\"t\":2}\n{\"t\":1}\n");
        let spans = vec![
            Span { start: 0, end: 7 },
            Span { start: 8, end: 15 },
            Span { start: 16, end: 23 },
        ];
        let origin = Origin {
            source: Arc::from("s"),
            arrival_unix_nanos: 0,
            arrival: Instant::now(),
            position: PositionBase::None,
        };
        let cond = Condition {
            field: Some(JsonPath::parse("t").unwrap()),
            attribute: None,
            test: Test::Equals("1".into()),
        };
        let mut b = crate::core::record::Batch::new(data.clone(), spans.clone(), origin.clone());
        Filter::new(FilterConfig {
            condition: cond.clone(),
            keep_matching: true,
        })
        .process(&mut b, &mut Vec::new())
        .unwrap();
        assert_eq!(b.len(), 2);
        let mut b = crate::core::record::Batch::new(data, spans, origin);
        Filter::new(FilterConfig {
            condition: cond,
            keep_matching: false,
        })
        .process(&mut b, &mut Vec::new())
        .unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b.payload(0), b"{\"t\":2}");
    }
}
