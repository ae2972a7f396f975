//! Where rsigma 0.23 (the newest release that builds with this workspace's
//! Rust 1.95) departs from the Sigma specification, Bannin rewrites the parsed
//! rule before compiling it. Both are fixed upstream in rsigma 0.26, which
//! needs Rust 1.96; drop this module when the toolchain moves.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsigma_parser::{
    ConditionOperator, CorrelationCondition, CorrelationRule, CorrelationType, Detection, Modifier,
    SigmaRule, SigmaString, SigmaValue,
};

/// `base64offset`: the specification (and pySigma) cuts, for each of the three
/// alignments, the leading characters that depend on the bytes before the value
/// *and the trailing ones that depend on the bytes after it*; rsigma 0.23 keeps
/// the trailing ones, so the value was found only at the very end of an
/// encoding. Rewritten here as the `contains|cased` of the three correct
/// patterns (base64 is case-sensitive).
pub fn rewrite_base64offset(rule: &mut SigmaRule) {
    for detection in rule.detection.named.values_mut() {
        rewrite_detection(detection);
    }
}

fn rewrite_detection(detection: &mut Detection) {
    match detection {
        Detection::AllOf(items) => {
            for item in items {
                let m = &item.field.modifiers;
                if !m.contains(&Modifier::Base64Offset) {
                    continue;
                }
                let encode: fn(&str) -> Vec<u8> = if m.contains(&Modifier::Wide) {
                    |s| s.encode_utf16().flat_map(u16::to_le_bytes).collect()
                } else if m.contains(&Modifier::Utf16be) {
                    |s| s.encode_utf16().flat_map(u16::to_be_bytes).collect()
                } else if m.contains(&Modifier::Utf16) {
                    |s| {
                        let mut b = vec![0xFF, 0xFE];
                        b.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
                        b
                    }
                } else {
                    |s| s.as_bytes().to_vec()
                };
                let mut values = Vec::new();
                for v in &item.values {
                    let SigmaValue::String(s) = v else {
                        // Left for the compiler to refuse.
                        return;
                    };
                    let Some(plain) = s.as_plain() else {
                        return;
                    };
                    for p in offset_patterns(&encode(&plain)) {
                        values.push(SigmaValue::String(SigmaString::new(&p)));
                    }
                }
                item.values = values;
                item.field.modifiers.retain(|m| {
                    !matches!(
                        m,
                        Modifier::Base64Offset
                            | Modifier::Wide
                            | Modifier::Utf16be
                            | Modifier::Utf16
                            | Modifier::Contains
                            | Modifier::Cased
                    )
                });
                item.field.modifiers.push(Modifier::Contains);
                item.field.modifiers.push(Modifier::Cased);
            }
        }
        Detection::AnyOf(list) | Detection::And(list) => {
            list.iter_mut().for_each(rewrite_detection)
        }
        _ => {}
    }
}

/// The three alignment-independent encodings of `value` (pySigma's algorithm).
pub fn offset_patterns(value: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_TRIM: [usize; 3] = [0, 3, 2];
    let mut out = Vec::with_capacity(3);
    for offset in 0..3 {
        let mut padded = vec![b' '; offset];
        padded.extend_from_slice(value);
        let encoded = STANDARD.encode(&padded);
        let end = encoded.len() - END_TRIM[(value.len() + offset) % 3];
        if START[offset] < end {
            out.push(encoded[START[offset]..end].to_owned());
        }
    }
    out
}

/// A `temporal` or `temporal_ordered` correlation without a condition needs
/// every rule it names to match; rsigma 0.23 defaults it to "any one rule".
pub fn temporal_needs_every_rule(corr: &mut CorrelationRule) {
    if !matches!(
        corr.correlation_type,
        CorrelationType::Temporal | CorrelationType::TemporalOrdered
    ) {
        return;
    }
    let distinct = corr
        .rules
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len() as u64;
    if let CorrelationCondition::Threshold {
        predicates,
        field: None,
        ..
    } = &mut corr.condition
        && predicates.as_slice() == [(ConditionOperator::Gte, 1)]
    {
        predicates[0].1 = distinct.max(1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn offset_patterns_are_pysigmas() {
        // pySigma: "http://" → aHR0cDovL, h0dHA6Ly, odHRwOi8v.
        assert_eq!(
            super::offset_patterns(b"http://"),
            ["aHR0cDovL", "h0dHA6Ly", "odHRwOi8v"]
        );
    }
}
