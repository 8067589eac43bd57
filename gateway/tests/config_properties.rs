//! Property tests of the config parser: whatever the text, `parse` returns
//! (never panics, never hangs), every error names the file and a field,
//! and whatever it accepts holds the invariants the rest of the gateway
//! relies on.

use gateway::config::{parse, ConfigError, Mode};
use proptest::prelude::*;
use std::path::Path;

const FILE: &str = "/etc/twinport/gateway.yaml";

/// Checks one outcome of `parse`.
fn check(text: &str) -> Result<(), TestCaseError> {
    match parse(Path::new(FILE), text) {
        Ok(c) => {
            prop_assert_ne!(&c.nodes[0].name, &c.nodes[1].name);
            prop_assert!(c.primary < 2);
            prop_assert!(c.retries.max_attempts >= 1 && c.retries.max_attempts <= 3);
            prop_assert!(!c.timeouts.connect.is_zero());
            prop_assert!(!c.health.interval.is_zero());
            prop_assert!(c.clients.max_body_bytes >= 1);
            prop_assert!(c.clients.max_header_bytes >= 1024);
            if c.mode == Mode::ActiveActive {
                prop_assert!(c.nodes.iter().any(|n| n.weight > 0));
            }
        }
        Err(e) => {
            let shown = e.to_string();
            prop_assert!(shown.starts_with(FILE), "{}", shown);
            if let ConfigError::Invalid { errors, .. } = &e {
                prop_assert!(!errors.is_empty());
                for fe in errors {
                    prop_assert!(!fe.field.is_empty(), "{}", shown);
                    prop_assert!(!fe.message.is_empty(), "{}", shown);
                }
            }
        }
    }
    Ok(())
}

/// Values an operator might type, and a few no operator should.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("127.0.0.1:8080".to_string()),
        Just("[::1]:443".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        Just("250ms".to_string()),
        Just("0s".to_string()),
        Just("10y".to_string()),
        Just("true".to_string()),
        Just("~".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("\"\"".to_string()),
        Just("active-active".to_string()),
        "[a-z0-9:.\\-/\\[\\]]{0,24}",
        "\\PC{0,16}".prop_map(|s| format!("{s:?}")),
    ]
}

fn document() -> impl Strategy<Value = String> {
    (
        value(),
        value(),
        value(),
        value(),
        value(),
        value(),
        value(),
        value(),
        prop::option::of(value()),
    )
        .prop_map(|(http, a, b, weight, mode, interval, limit, body, extra)| {
            let mut doc = format!(
                "listeners:\n  http: {http}\nmode: {mode}\nnodes:\n  - name: a\n    address: {a}\n    weight: {weight}\n  - name: b\n    address: {b}\n\
health_check:\n  interval: {interval}\nclients:\n  rate_limit: {limit}\n  max_body_bytes: {body}\n  trusted_proxies: [{a}]\n"
            );
            if let Some(x) = extra {
                doc.push_str(&format!("retries:\n  max_attempts: {x}\n"));
            }
            doc
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_text_gets_an_answer(text in "\\PC{0,400}") {
        check(&text)?;
    }

    #[test]
    fn any_values_in_a_gateway_shaped_file_get_an_answer(doc in document()) {
        check(&doc)?;
    }

    #[test]
    fn lines_of_a_good_file_shuffled_or_dropped_get_an_answer(
        keep in prop::collection::vec(any::<bool>(), 12),
        swap in (0usize..12, 0usize..12),
    ) {
        let good = "listeners:\n  http: 127.0.0.1:8080\n  metrics: 127.0.0.1:9100\nnodes:\n  - name: a\n    address: 127.0.0.1:8081\n    weight: 100\n  - name: b\n    address: 127.0.0.1:8082\nretries:\n  max_attempts: 2\nmode: active-active\n";
        let mut lines: Vec<&str> = good.lines().collect();
        lines.swap(swap.0, swap.1);
        let text: String = lines
            .iter()
            .zip(keep.iter().chain(std::iter::repeat(&true)))
            .filter(|(_, k)| **k)
            .map(|(l, _)| format!("{l}\n"))
            .collect();
        check(&text)?;
    }
}
