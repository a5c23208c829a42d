//! The built-in `route` stage: sends records to named sinks by conditions.
//!
//! Every rule whose condition matches adds its sinks to the record's destinations (so a record
//! can fan out to several sinks); a record that matches no rule goes to the stage's `default`
//! sinks (the pipeline's default sinks unless set). A record left with no destination at all is
//! dropped and counted as dropped by this stage. Sink names are resolved to indices when the
//! config is validated; the mechanism is the batch's route masks, which the dispatcher reads.

use crate::config::reader::{Diagnostics, Located, Section};
use crate::core::dead_letter::DeadLetter;
use crate::core::matcher::Condition;
use crate::core::record::Batch;
use crate::stages::Stage;
use crate::stages::builtin::parse_condition;

/// One routing rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteRule {
    /// When the rule applies.
    pub condition: Condition,
    /// Sink names as written (resolved into `mask`).
    pub sink_names: Vec<Located<String>>,
    /// Destination sinks as a bit mask over the pipeline's sinks.
    pub mask: u64,
}

/// Settings of a route stage.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// Rules, all evaluated for every record.
    pub rules: Vec<RouteRule>,
    /// Sinks for records no rule matched, as written; `None` = the pipeline's default sinks.
    pub default_names: Option<Vec<Located<String>>>,
    /// Resolved default mask.
    pub default_mask: u64,
}

impl RouteConfig {
    /// Reads a `kind = "route"` stage table: `[[stages.rules]]` with a condition and `sinks`,
    /// and an optional `default` list of sinks.
    pub fn parse(s: &mut Section<'_>, d: &mut Diagnostics) -> Option<RouteConfig> {
        let mut rules = Vec::new();
        let tables = s.table_array(d, "rules");
        if tables.is_empty() {
            d.error(
                &s.spot(),
                "a route stage needs at least one `[[stages.rules]]`",
            );
        }
        let mut ok = true;
        for mut t in tables {
            let condition = parse_condition(&mut t, d);
            let sinks = t.opt_str_list(d, "sinks");
            if sinks.as_ref().is_none_or(|s| s.is_empty()) {
                d.error(&t.spot(), "a rule needs `sinks = [\"name\", ...]`");
            }
            t.finish(d);
            match condition {
                Some(condition) => rules.push(RouteRule {
                    condition,
                    sink_names: sinks.unwrap_or_default(),
                    mask: 0,
                }),
                None => ok = false,
            }
        }
        let default_names = s.opt_str_list(d, "default");
        ok.then_some(RouteConfig {
            rules,
            default_names,
            default_mask: 0,
        })
    }
}

/// The route stage.
#[derive(Debug)]
pub struct Route {
    cfg: RouteConfig,
}

impl Route {
    /// A route stage with resolved masks.
    pub fn new(cfg: RouteConfig) -> Route {
        Route { cfg }
    }
}

impl Stage for Route {
    fn process(
        &mut self,
        batch: &mut Batch,
        _dead: &mut Vec<DeadLetter>,
    ) -> Result<(), crate::stages::StageError> {
        let masks: Vec<u64> = batch
            .records()
            .map(|rec| {
                let m = self
                    .cfg
                    .rules
                    .iter()
                    .filter(|r| r.condition.matches_record(&rec))
                    .fold(0u64, |m, r| m | r.mask);
                if m == 0 { self.cfg.default_mask } else { m }
            })
            .collect();
        let keep: Vec<bool> = masks.iter().map(|&m| m != 0).collect();
        batch.set_routes(masks);
        if keep.iter().any(|k| !k) {
            batch.retain_mask(&keep);
        }
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
    fn routes_by_rules_with_default_and_drop() {
        let data = Bytes::from_static(b"{\"s\":\"a\"}\n{\"s\":\"b\"}\n{\"s\":\"c\"}\n");
        let spans = vec![
            Span { start: 0, end: 9 },
            Span { start: 10, end: 19 },
            Span { start: 20, end: 29 },
        ];
        let origin = Origin {
            source: Arc::from("s"),
            arrival_unix_nanos: 0,
            arrival: Instant::now(),
            position: PositionBase::None,
        };
        let rule = |v: &str, mask| RouteRule {
            condition: Condition {
                field: Some(JsonPath::parse("s").unwrap()),
                attribute: None,
                test: Test::Equals(v.into()),
            },
            sink_names: Vec::new(),
            mask,
        };
        let cfg = RouteConfig {
            rules: vec![rule("a", 0b01), rule("a", 0b10), rule("b", 0b10)],
            default_names: None,
            default_mask: 0,
        };
        let mut b = Batch::new(data, spans, origin);
        Route::new(cfg).process(&mut b, &mut Vec::new()).unwrap();
        // "c" matched nothing and there is no default: dropped.
        assert_eq!(b.len(), 2);
        assert_eq!(b.routes(), Some(&[0b11u64, 0b10][..]));
    }
}
