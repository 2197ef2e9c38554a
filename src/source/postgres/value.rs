//! PostgreSQL output text + type OID -> JSON: the one decoding path of both PostgreSQL
//! listeners.
//!
//! Both read every value in the form the type's output function prints it: the logical
//! listener gets pgoutput's text values (pgoutput calls the output function), the polling
//! listener reads its rows as text-format results (the server calls the same output function
//! for them; a `::text` cast would not: `char(5)` would lose its padding, `inet` gain a mask,
//! `bool` print `true`). So the same value prints the same JSON whichever strategy captured
//! it. This mapping is the product's public JSON contract (README, "Values keep their types"):
//! only types whose text maps losslessly onto JSON become numbers, booleans or embedded JSON;
//! everything else (numeric, money, dates, uuid, arrays, enums, domains, composites, ...)
//! stays the exact string PostgreSQL printed, so no precision or formatting is lost.

use serde_json::{Number, Value};

/// Built-in type OIDs (`pg_type.oid`) that the conversion distinguishes.
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const MONEY: u32 = 790;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const TIMETZ: u32 = 1266;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// Whether values of this type are JSON text, embedded in the JSON lines as written (see
/// `change::Row`) rather than parsed.
pub fn is_json(type_oid: u32) -> bool {
    matches!(type_oid, oid::JSON | oid::JSONB)
}

/// Converts one non-NULL value in PostgreSQL text format to JSON.
///
/// Never fails: text that does not parse as its declared type is kept as a
/// JSON string, so a surprising server setting degrades to strings rather
/// than dropping data.
pub fn text_to_json(type_oid: u32, text: &str) -> Value {
    typed(type_oid, text).unwrap_or_else(|| Value::String(text.to_owned()))
}

/// Like [`text_to_json`], for text the caller owns: a value that stays a string keeps its
/// allocation (the replication stream's values are decoded into owned strings already).
pub fn text_into_json(type_oid: u32, text: String) -> Value {
    typed(type_oid, &text).unwrap_or(Value::String(text))
}

/// The JSON of a value whose type maps onto JSON, `None` where the contract is the text
/// itself (or the text does not parse as its type).
fn typed(type_oid: u32, text: &str) -> Option<Value> {
    match type_oid {
        oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => {
            text.parse::<i64>().ok().map(|n| Value::Number(n.into()))
        }
        // Parse float4 as f64 too: going through f32 would turn "0.1" into
        // 0.10000000149011612. Non-finite values (NaN, Infinity, -Infinity)
        // have no JSON number form, and `from_f64` rejects them, so they
        // fall back to PostgreSQL's own spelling.
        oid::FLOAT4 | oid::FLOAT8 => text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number),
        // boolout prints `t` / `f`.
        oid::BOOL => match text {
            "t" => Some(Value::Bool(true)),
            "f" => Some(Value::Bool(false)),
            _ => None,
        },
        // JSON text stays as written: the row embeds it (see `change::Row`).
        oid::JSON | oid::JSONB => None,
        // Listed explicitly (although the fallback arm does the same) to
        // document that these are strings on purpose: numeric and money
        // would lose precision or formatting as JSON numbers, bytea stays
        // in PostgreSQL's `\x..` hex form.
        oid::NUMERIC
        | oid::MONEY
        | oid::TIMESTAMP
        | oid::TIMESTAMPTZ
        | oid::DATE
        | oid::TIME
        | oid::TIMETZ
        | oid::INTERVAL
        | oid::UUID
        | oid::BYTEA
        | oid::TEXT
        | oid::VARCHAR
        | oid::BPCHAR
        | oid::NAME => None,
        // Arrays, enums, domains, extension types, ...
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(cases: &[(u32, &str, Value)]) {
        for (type_oid, text, want) in cases {
            assert_eq!(
                &text_to_json(*type_oid, text),
                want,
                "type {type_oid}, text {text:?}"
            );
            assert_eq!(
                &text_into_json(*type_oid, (*text).to_owned()),
                want,
                "owned: type {type_oid}, text {text:?}"
            );
        }
    }

    /// Types whose contract is "exactly the text PostgreSQL sent".
    fn check_verbatim(cases: &[(u32, &str)]) {
        for (type_oid, text) in cases {
            assert_eq!(
                text_to_json(*type_oid, text),
                Value::String((*text).to_owned()),
                "type {type_oid}"
            );
        }
    }

    #[test]
    fn integers_become_numbers() {
        check(&[
            (oid::INT2, "-32768", json!(-32768)),
            (oid::INT2, "0", json!(0)),
            (oid::INT4, "2147483647", json!(2_147_483_647)),
            (oid::INT4, "-17", json!(-17)),
            (oid::INT8, "9223372036854775807", json!(i64::MAX)),
            (oid::INT8, "-9223372036854775808", json!(i64::MIN)),
            (oid::OID, "4294967295", json!(4_294_967_295_u32)),
        ]);
    }

    #[test]
    fn unparsable_integers_fall_back_to_strings() {
        check(&[
            (
                oid::INT8,
                "99999999999999999999",
                json!("99999999999999999999"),
            ),
            (oid::INT4, "", json!("")),
            (oid::INT4, "1.5", json!("1.5")),
            (oid::INT4, " 1", json!(" 1")),
        ]);
    }

    #[test]
    fn floats_become_numbers_except_non_finite() {
        check(&[
            (oid::FLOAT8, "1.5", json!(1.5)),
            (oid::FLOAT8, "-2", json!(-2.0)),
            (oid::FLOAT8, "1e+100", json!(1e100)),
            (oid::FLOAT8, "1.7976931348623157e+308", json!(f64::MAX)),
            (oid::FLOAT4, "0.1", json!(0.1)),
            (oid::FLOAT4, "3.4028235e+38", json!(3.402_823_5e38)),
            (oid::FLOAT8, "NaN", json!("NaN")),
            (oid::FLOAT8, "Infinity", json!("Infinity")),
            (oid::FLOAT8, "-Infinity", json!("-Infinity")),
            (oid::FLOAT4, "NaN", json!("NaN")),
            (oid::FLOAT4, "Infinity", json!("Infinity")),
            (oid::FLOAT4, "-Infinity", json!("-Infinity")),
            (oid::FLOAT8, "garbage", json!("garbage")),
        ]);
        // float4 "0.1" must not pick up f32 rounding noise.
        assert_eq!(text_to_json(oid::FLOAT4, "0.1").to_string(), "0.1");
        // The same number, in JSON's spelling (README): the sign of zero is kept.
        for (text, json) in [
            ("-0", "-0.0"),
            ("1e+100", "1e+100"),
            ("5e-324", "5e-324"),
            ("1.5", "1.5"),
            ("100", "100.0"),
        ] {
            assert_eq!(text_to_json(oid::FLOAT8, text).to_string(), json, "{text}");
        }
    }

    #[test]
    fn booleans_as_boolout_prints_them() {
        check(&[
            (oid::BOOL, "t", json!(true)),
            (oid::BOOL, "f", json!(false)),
            // Not boolout's spelling (a `::text` cast's): kept as the text it is.
            (oid::BOOL, "true", json!("true")),
            (oid::BOOL, "maybe", json!("maybe")),
        ]);
    }

    #[test]
    fn json_and_jsonb_keep_their_text_for_the_row_to_embed() {
        check(&[
            (
                oid::JSON,
                r#"{"a": [1, 2, {"b": null}], "a": 1e400}"#,
                json!(r#"{"a": [1, 2, {"b": null}], "a": 1e400}"#),
            ),
            (oid::JSONB, "null", json!("null")),
        ]);
        assert!(is_json(oid::JSON) && is_json(oid::JSONB) && !is_json(oid::TEXT));
    }

    #[test]
    fn precision_sensitive_and_temporal_types_stay_strings() {
        check_verbatim(&[
            (oid::NUMERIC, "12345678901234567890.000000001"),
            (oid::NUMERIC, "NaN"),
            (oid::MONEY, "$1,234.50"),
            (oid::TIMESTAMP, "2024-05-01 12:34:56.789"),
            (oid::TIMESTAMPTZ, "2024-05-01 12:34:56+02"),
            (oid::TIMESTAMPTZ, "infinity"),
            (oid::DATE, "2024-05-01"),
            (oid::TIME, "12:34:56"),
            (oid::TIMETZ, "12:34:56+05:30"),
            (oid::INTERVAL, "1 day 02:00:00"),
            (oid::UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ]);
    }

    #[test]
    fn text_like_and_unknown_types_stay_strings() {
        check_verbatim(&[
            (oid::TEXT, "hello \"world\"\n"),
            (oid::VARCHAR, ""),
            (oid::BPCHAR, "ab   "),
            (oid::NAME, "pg_class"),
            (oid::TEXT, "42"),
            (oid::TEXT, "t"),
            (oid::TEXT, "{\"a\": 1}"),
            // int4[] and text[] arrays, and an unknown (e.g. enum) OID.
            (1007, "{1,2,3}"),
            (1009, r#"{a,"b c",NULL}"#),
            (70_000, "happy"),
        ]);
    }

    #[test]
    fn bytea_keeps_hex_format() {
        check(&[
            (oid::BYTEA, r"\x0102", json!(r"\x0102")),
            (oid::BYTEA, r"\x", json!(r"\x")),
        ]);
        assert_eq!(
            serde_json::to_string(&text_to_json(oid::BYTEA, r"\x0102")).unwrap(),
            r#""\\x0102""#
        );
    }
}
