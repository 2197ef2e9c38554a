//! The subset of MongoDB query, sort, projection and update semantics the
//! test server implements. Anything unsupported is an error, never a silent
//! mismatch, so a test relying on it fails loudly.

use std::cmp::Ordering;

use bson::{Bson, DateTime, Document, doc, oid::ObjectId};

use crate::error::{CmdResult, CommandError};

/// Position of a BSON type in MongoDB's cross-type sort order.
fn type_rank(v: &Bson) -> u8 {
    match v {
        Bson::MinKey => 0,
        Bson::Null | Bson::Undefined => 1,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => 2,
        Bson::String(_) | Bson::Symbol(_) => 3,
        Bson::Document(_) => 4,
        Bson::Array(_) => 5,
        Bson::Binary(_) => 6,
        Bson::ObjectId(_) => 7,
        Bson::Boolean(_) => 8,
        Bson::DateTime(_) => 9,
        Bson::Timestamp(_) => 10,
        Bson::RegularExpression(_) => 11,
        Bson::MaxKey => 13,
        _ => 12,
    }
}

enum Num {
    Int(i64),
    Float(f64),
}

fn as_num(v: &Bson) -> Option<Num> {
    match v {
        Bson::Int32(i) => Some(Num::Int(i64::from(*i))),
        Bson::Int64(i) => Some(Num::Int(*i)),
        Bson::Double(f) => Some(Num::Float(*f)),
        // Decimal128 has no arithmetic in the bson crate; its text form parses
        // for the ordinary values tests use.
        Bson::Decimal128(d) => d.to_string().parse::<f64>().ok().map(Num::Float),
        _ => None,
    }
}

/// NaN sorts below every other number and equals itself, as in MongoDB, which
/// keeps this a total order (needed for `_id` keys in ordered maps).
fn cmp_f64(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

fn num_to_f64(n: Num) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

fn cmp_num(a: &Num, b: &Num) -> Ordering {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.cmp(y),
        (Num::Int(x), Num::Float(y)) => cmp_f64(*x as f64, *y),
        (Num::Float(x), Num::Int(y)) => cmp_f64(*x, *y as f64),
        (Num::Float(x), Num::Float(y)) => cmp_f64(*x, *y),
    }
}

/// Total order over BSON values following MongoDB's comparison rules closely
/// enough for tests (numbers compare by value across int/long/double).
pub fn compare(a: &Bson, b: &Bson) -> Ordering {
    let (ra, rb) = (type_rank(a), type_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        _ if ra == 2 => match (as_num(a), as_num(b)) {
            (Some(x), Some(y)) => cmp_num(&x, &y),
            _ => Ordering::Equal,
        },
        (Bson::String(x) | Bson::Symbol(x), Bson::String(y) | Bson::Symbol(y)) => x.cmp(y),
        (Bson::Document(x), Bson::Document(y)) => compare_docs(x, y),
        (Bson::Array(x), Bson::Array(y)) => compare_seq(x, y),
        (Bson::Binary(x), Bson::Binary(y)) => x
            .bytes
            .len()
            .cmp(&y.bytes.len())
            .then(u8::from(x.subtype).cmp(&u8::from(y.subtype)))
            .then_with(|| x.bytes.cmp(&y.bytes)),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (Bson::Boolean(x), Bson::Boolean(y)) => x.cmp(y),
        (Bson::DateTime(x), Bson::DateTime(y)) => x.cmp(y),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => {
            (x.time, x.increment).cmp(&(y.time, y.increment))
        }
        (Bson::RegularExpression(x), Bson::RegularExpression(y)) => x
            .pattern
            .cmp(&y.pattern)
            .then_with(|| x.options.cmp(&y.options)),
        (Bson::MinKey, _) | (Bson::MaxKey, _) | (Bson::Null | Bson::Undefined, _) => {
            Ordering::Equal
        }
        // Rare types (code, db pointers): any consistent order will do.
        _ => format!("{a:?}").cmp(&format!("{b:?}")),
    }
}

fn compare_docs(x: &Document, y: &Document) -> Ordering {
    let mut xi = x.iter();
    let mut yi = y.iter();
    loop {
        match (xi.next(), yi.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((xk, xv)), Some((yk, yv))) => {
                let o = type_rank(xv)
                    .cmp(&type_rank(yv))
                    .then_with(|| xk.cmp(yk))
                    .then_with(|| compare(xv, yv));
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

fn compare_seq(x: &[Bson], y: &[Bson]) -> Ordering {
    for (a, b) in x.iter().zip(y) {
        let o = compare(a, b);
        if o != Ordering::Equal {
            return o;
        }
    }
    x.len().cmp(&y.len())
}

pub fn values_equal(a: &Bson, b: &Bson) -> bool {
    compare(a, b) == Ordering::Equal
}

/// All values reachable by a dotted path. Arrays fan out over their elements
/// (unless the segment is a numeric index), as MongoDB queries do.
pub fn lookup<'a>(doc: &'a Document, path: &str) -> Vec<&'a Bson> {
    let segments: Vec<&str> = path.split('.').collect();
    let mut out = Vec::new();
    lookup_doc(doc, &segments, &mut out);
    out
}

fn lookup_doc<'a>(doc: &'a Document, segs: &[&str], out: &mut Vec<&'a Bson>) {
    if let Some(v) = doc.get(segs[0]) {
        lookup_value(v, &segs[1..], out);
    }
}

fn lookup_value<'a>(v: &'a Bson, segs: &[&str], out: &mut Vec<&'a Bson>) {
    if segs.is_empty() {
        out.push(v);
        return;
    }
    match v {
        Bson::Document(d) => lookup_doc(d, segs, out),
        Bson::Array(items) => {
            if let Ok(i) = segs[0].parse::<usize>() {
                if let Some(item) = items.get(i) {
                    lookup_value(item, &segs[1..], out);
                }
            } else {
                for item in items {
                    if let Bson::Document(d) = item {
                        lookup_doc(d, segs, out);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Whether `doc` matches a query filter.
pub fn matches(doc: &Document, filter: &Document) -> CmdResult<bool> {
    for (key, cond) in filter {
        let ok = match key.as_str() {
            "$and" | "$or" | "$nor" => {
                let Bson::Array(items) = cond else {
                    return Err(CommandError::bad_value(format!("{key} must be an array")));
                };
                let mut results = Vec::with_capacity(items.len());
                for item in items {
                    let Bson::Document(sub) = item else {
                        return Err(CommandError::bad_value(format!(
                            "{key} argument's entries must be objects"
                        )));
                    };
                    results.push(matches(doc, sub)?);
                }
                match key.as_str() {
                    "$and" => results.iter().all(|r| *r),
                    "$or" => results.iter().any(|r| *r),
                    _ => !results.iter().any(|r| *r),
                }
            }
            "$comment" => true,
            k if k.starts_with('$') => {
                return Err(CommandError::bad_value(format!(
                    "unknown top level operator: {k}"
                )));
            }
            path => match_path(doc, path, cond)?,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Refuses a filter that [`matches`] would refuse on some document (an unknown operator, a
/// malformed argument), as the real server refuses it before running anything.
pub fn check_filter(filter: &Document) -> CmdResult<()> {
    for (key, cond) in filter {
        match key.as_str() {
            "$and" | "$or" | "$nor" => {
                let Bson::Array(items) = cond else {
                    return Err(CommandError::bad_value(format!("{key} must be an array")));
                };
                for item in items {
                    let Bson::Document(sub) = item else {
                        return Err(CommandError::bad_value(format!(
                            "{key} argument's entries must be objects"
                        )));
                    };
                    check_filter(sub)?;
                }
            }
            _ => {
                // Each operator on its own, so none is skipped by an earlier one failing.
                for (op, arg) in is_operator_doc(cond).into_iter().flatten() {
                    let single = doc! { key.clone(): { op.clone(): arg.clone() } };
                    matches(&Document::new(), &single)?;
                }
            }
        }
    }
    Ok(())
}

fn is_operator_doc(v: &Bson) -> Option<&Document> {
    match v {
        Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => Some(d),
        _ => None,
    }
}

fn match_path(doc: &Document, path: &str, cond: &Bson) -> CmdResult<bool> {
    let values = lookup(doc, path);
    match is_operator_doc(cond) {
        Some(ops) => match_operators(&values, ops),
        None => Ok(any_equal(&values, cond)),
    }
}

/// Equality as a query sees it: an array field matches if it equals the value
/// or any element does, and `null` also matches a missing field.
fn any_equal(values: &[&Bson], want: &Bson) -> bool {
    if values.is_empty() {
        return matches!(want, Bson::Null);
    }
    values.iter().any(|v| {
        values_equal(v, want)
            || matches!(v, Bson::Array(items) if items.iter().any(|i| values_equal(i, want)))
    })
}

fn any_compare(values: &[&Bson], want: &Bson, pred: fn(Ordering) -> bool) -> bool {
    let check = |v: &Bson| type_rank(v) == type_rank(want) && pred(compare(v, want));
    values
        .iter()
        .any(|v| check(v) || matches!(v, Bson::Array(items) if items.iter().any(check)))
}

fn match_operators(values: &[&Bson], ops: &Document) -> CmdResult<bool> {
    for (op, arg) in ops {
        let ok = match op.as_str() {
            "$eq" => any_equal(values, arg),
            "$ne" => !any_equal(values, arg),
            "$gt" => any_compare(values, arg, |o| o == Ordering::Greater),
            "$gte" => any_compare(values, arg, |o| o != Ordering::Less),
            "$lt" => any_compare(values, arg, |o| o == Ordering::Less),
            "$lte" => any_compare(values, arg, |o| o != Ordering::Greater),
            "$in" | "$nin" => {
                let Bson::Array(options) = arg else {
                    return Err(CommandError::bad_value(format!("{op} needs an array")));
                };
                let found = options.iter().any(|o| any_equal(values, o));
                if op == "$in" { found } else { !found }
            }
            "$exists" => {
                let want = !matches!(arg, Bson::Boolean(false) | Bson::Int32(0) | Bson::Int64(0));
                values.is_empty() != want
            }
            "$size" => {
                let n = as_num(arg).map(|n| match n {
                    Num::Int(i) => i,
                    Num::Float(f) => f as i64,
                });
                values
                    .iter()
                    .any(|v| matches!(v, Bson::Array(a) if Some(a.len() as i64) == n))
            }
            "$not" => match arg {
                Bson::Document(inner) => !match_operators(values, inner)?,
                _ => return Err(CommandError::bad_value("$not needs a document")),
            },
            other => {
                return Err(CommandError::bad_value(format!(
                    "unknown operator: {other} (not supported by mongo-test-server)"
                )));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Sorts documents by a `{field: 1 | -1, ...}` specification.
pub fn sort_documents(docs: &mut [Document], spec: &Document) -> CmdResult<()> {
    let mut keys = Vec::new();
    for (path, dir) in spec {
        let d = as_num(dir).map(num_to_f64);
        let dir = if d == Some(1.0) {
            1
        } else if d == Some(-1.0) {
            -1
        } else {
            return Err(CommandError::bad_value(
                "$sort key ordering must be 1 or -1",
            ));
        };
        keys.push((path.clone(), dir));
    }
    docs.sort_by(|a, b| {
        for (path, dir) in &keys {
            let va = lookup(a, path)
                .first()
                .copied()
                .cloned()
                .unwrap_or(Bson::Null);
            let vb = lookup(b, path)
                .first()
                .copied()
                .cloned()
                .unwrap_or(Bson::Null);
            let o = compare(&va, &vb);
            if o != Ordering::Equal {
                return if *dir == 1 { o } else { o.reverse() };
            }
        }
        Ordering::Equal
    });
    Ok(())
}

/// Applies a projection on top-level fields (a dotted path selects or removes
/// its whole top-level field).
pub fn project(doc: &Document, projection: &Document) -> Document {
    let truthy = |v: &Bson| {
        !matches!(v, Bson::Boolean(false) | Bson::Int32(0) | Bson::Int64(0))
            && !matches!(v, Bson::Double(f) if *f == 0.0)
    };
    let top = |k: &str| k.split('.').next().unwrap_or(k).to_owned();
    let inclusion = projection.iter().any(|(k, v)| k != "_id" && truthy(v));
    let id_excluded = projection.get("_id").is_some_and(|v| !truthy(v));
    if inclusion {
        let fields: Vec<String> = projection
            .iter()
            .filter(|(k, v)| *k != "_id" && truthy(v))
            .map(|(k, _)| top(k))
            .collect();
        doc.iter()
            .filter(|(k, _)| (*k == "_id" && !id_excluded) || fields.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    } else {
        let removed: Vec<String> = projection
            .iter()
            .filter(|(_, v)| !truthy(v))
            .map(|(k, _)| top(k))
            .collect();
        doc.iter()
            .filter(|(k, _)| !removed.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Whether an update document uses operators (`$set`...) rather than being a
/// replacement.
pub fn is_operator_update(u: &Document) -> bool {
    u.keys().next().is_some_and(|k| k.starts_with('$'))
}

/// What an operator update did, in the shape change events report it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateOutcome {
    pub doc: Document,
    pub updated_fields: Document,
    pub removed_fields: Vec<String>,
}

fn immutable_id() -> CommandError {
    CommandError::new(
        66,
        "ImmutableField",
        "Performing an update on the path '_id' would modify the immutable field '_id'",
    )
}

/// Applies `$set`, `$unset`, `$inc`, `$push`, `$currentDate` and (when
/// `inserting`) `$setOnInsert` to a copy of `doc`.
pub fn apply_update(
    doc: &Document,
    update: &Document,
    inserting: bool,
) -> CmdResult<UpdateOutcome> {
    let mut new = doc.clone();
    let mut touched: Vec<String> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    for (op, arg) in update {
        let Bson::Document(fields) = arg else {
            return Err(CommandError::failed_to_parse(format!(
                "Modifiers operate on fields but we found type {:?} instead",
                arg.element_type()
            )));
        };
        for (path, value) in fields {
            if path == "_id" || path.starts_with("_id.") {
                let current = lookup(&new, path).first().copied().cloned();
                let unchanged = matches!((op.as_str(), &current), ("$set" | "$setOnInsert", Some(c)) if values_equal(c, value));
                let creating = inserting && current.is_none();
                let skipped = op == "$setOnInsert" && !inserting;
                if !(unchanged || creating || skipped) {
                    return Err(immutable_id());
                }
            }
            match op.as_str() {
                "$set" => set_path(&mut new, path, value.clone())?,
                "$setOnInsert" => {
                    if inserting {
                        set_path(&mut new, path, value.clone())?;
                    } else {
                        continue;
                    }
                }
                "$unset" => {
                    if remove_path(&mut new, path) {
                        removed.push(path.clone());
                    }
                    continue;
                }
                "$inc" => {
                    let current = lookup(&new, path).first().copied().cloned();
                    let sum = add_numbers(current.as_ref(), value, path)?;
                    set_path(&mut new, path, sum)?;
                }
                "$push" => {
                    let items = match value {
                        Bson::Document(d) if d.contains_key("$each") => match d.get("$each") {
                            Some(Bson::Array(a)) => a.clone(),
                            _ => return Err(CommandError::bad_value("$each must be an array")),
                        },
                        other => vec![other.clone()],
                    };
                    let mut arr = match lookup(&new, path).first() {
                        None => Vec::new(),
                        Some(Bson::Array(a)) => a.clone(),
                        Some(_) => {
                            return Err(CommandError::bad_value(format!(
                                "The field '{path}' must be an array"
                            )));
                        }
                    };
                    arr.extend(items);
                    set_path(&mut new, path, Bson::Array(arr))?;
                }
                "$currentDate" => set_path(&mut new, path, Bson::DateTime(DateTime::now()))?,
                other => {
                    return Err(CommandError::failed_to_parse(format!(
                        "Unknown modifier: {other}. Expected a valid update modifier or \
                         pipeline-style update specified as an array (mongo-test-server \
                         supports $set, $unset, $inc, $push, $currentDate, $setOnInsert)"
                    )));
                }
            }
            removed.retain(|r| r != path);
            touched.push(path.clone());
        }
    }
    // Only fields whose value really changed are reported, as the real server does.
    let mut updated_fields = Document::new();
    for path in touched {
        let after = lookup(&new, &path).first().copied().cloned();
        let before = lookup(doc, &path).first().copied().cloned();
        if let Some(after) = after
            && before.as_ref().is_none_or(|b| {
                !values_equal(b, &after) || b.element_type() != after.element_type()
            })
        {
            updated_fields.insert(path, after);
        }
    }
    Ok(UpdateOutcome {
        doc: new,
        updated_fields,
        removed_fields: removed,
    })
}

fn add_numbers(current: Option<&Bson>, delta: &Bson, path: &str) -> CmdResult<Bson> {
    let non_numeric = || {
        CommandError::type_mismatch(format!(
            "Cannot apply $inc to a value of non-numeric type. {{_id: ...}} has the field \
             '{path}' of non-numeric type"
        ))
    };
    let d = as_num(delta)
        .ok_or_else(|| CommandError::type_mismatch("Cannot increment with non-numeric argument"))?;
    let Some(current) = current else {
        return Ok(delta.clone());
    };
    let c = as_num(current).ok_or_else(non_numeric)?;
    Ok(match (current, delta, c, d) {
        (Bson::Int32(a), Bson::Int32(b), _, _) => match a.checked_add(*b) {
            Some(s) => Bson::Int32(s),
            None => Bson::Int64(i64::from(*a) + i64::from(*b)),
        },
        (_, _, Num::Int(a), Num::Int(b)) => Bson::Int64(a.wrapping_add(b)),
        (_, _, a, b) => Bson::Double(num_to_f64(a) + num_to_f64(b)),
    })
}

fn path_not_viable(path: &str) -> CommandError {
    CommandError::new(
        28,
        "PathNotViable",
        format!("Cannot create field in path '{path}': an intermediate value is not a document"),
    )
}

/// Sets a dotted path, creating intermediate documents.
pub fn set_path(doc: &mut Document, path: &str, value: Bson) -> CmdResult<()> {
    match path.split_once('.') {
        None => {
            doc.insert(path, value);
            Ok(())
        }
        Some((head, rest)) => {
            let child = doc
                .entry(head.to_owned())
                .or_insert_with(|| Bson::Document(Document::new()));
            match child {
                Bson::Document(d) => set_path(d, rest, value),
                Bson::Array(items) => {
                    let (idx, tail) = rest
                        .split_once('.')
                        .map_or((rest, None), |(a, b)| (a, Some(b)));
                    let i: usize = idx.parse().map_err(|_| path_not_viable(path))?;
                    if i > items.len() + 10_000 {
                        return Err(path_not_viable(path));
                    }
                    while items.len() <= i {
                        items.push(Bson::Null);
                    }
                    match tail {
                        None => {
                            items[i] = value;
                            Ok(())
                        }
                        Some(t) => {
                            if !matches!(items[i], Bson::Document(_)) {
                                items[i] = Bson::Document(Document::new());
                            }
                            match &mut items[i] {
                                Bson::Document(d) => set_path(d, t, value),
                                _ => Err(path_not_viable(path)),
                            }
                        }
                    }
                }
                _ => Err(path_not_viable(path)),
            }
        }
    }
}

/// Removes a dotted path; returns whether something was there.
pub fn remove_path(doc: &mut Document, path: &str) -> bool {
    match path.split_once('.') {
        None => doc.remove(path).is_some(),
        Some((head, rest)) => match doc.get_mut(head) {
            Some(Bson::Document(d)) => remove_path(d, rest),
            Some(Bson::Array(items)) => {
                // $unset on an array element sets it to null rather than shifting.
                match rest.parse::<usize>() {
                    Ok(i) if i < items.len() => {
                        items[i] = Bson::Null;
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        },
    }
}

/// The document an upsert starts from: the filter's equality conditions.
pub fn upsert_seed(filter: &Document) -> CmdResult<Document> {
    let mut seed = Document::new();
    for (k, v) in filter {
        if k.starts_with('$') {
            continue;
        }
        let value = match is_operator_doc(v) {
            Some(ops) => match ops.get("$eq") {
                Some(eq) => eq.clone(),
                None => continue,
            },
            None => v.clone(),
        };
        set_path(&mut seed, k, value)?;
    }
    Ok(seed)
}

/// Returns `doc` with `_id` first, generating an ObjectId when missing, as the
/// server does on insert.
pub fn with_id_first(doc: Document) -> Document {
    let id = doc
        .get("_id")
        .cloned()
        .unwrap_or_else(|| Bson::ObjectId(ObjectId::new()));
    let mut out = Document::new();
    out.insert("_id", id);
    for (k, v) in doc {
        if k != "_id" {
            out.insert(k, v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn numeric_equality_crosses_types() {
        assert!(values_equal(&Bson::Int32(5), &Bson::Double(5.0)));
        assert!(values_equal(&Bson::Int64(5), &Bson::Int32(5)));
        assert_eq!(compare(&Bson::Null, &Bson::Int32(0)), Ordering::Less);
    }

    #[test]
    fn filters() {
        let d = doc! { "_id": 1, "a": { "b": 3 }, "tags": ["x", "y"], "n": null };
        assert!(matches(&d, &doc! { "a.b": 3 }).unwrap());
        assert!(matches(&d, &doc! { "tags": "y" }).unwrap());
        assert!(matches(&d, &doc! { "missing": null }).unwrap());
        assert!(matches(&d, &doc! { "a.b": { "$gte": 3, "$lt": 4 } }).unwrap());
        assert!(!matches(&d, &doc! { "a.b": { "$gt": "2" } }).unwrap());
        assert!(
            matches(
                &d,
                &doc! { "$or": [ { "_id": 2 }, { "_id": { "$in": [1, 3] } } ] }
            )
            .unwrap()
        );
        assert!(matches(&d, &doc! { "zzz": { "$exists": false } }).unwrap());
        assert!(matches(&d, &doc! { "tags": { "$size": 2 } }).unwrap());
        assert!(matches(&d, &doc! { "_id": { "$regex": "x" } }).is_err());
    }

    #[test]
    fn updates_report_changes() {
        let d = doc! { "_id": 1, "a": 1, "b": "x", "c": { "d": 1 } };
        let out = apply_update(
            &d,
            &doc! { "$set": { "b": "x", "c.e": 2 }, "$unset": { "a": "" }, "$inc": { "n": 2 } },
            false,
        )
        .unwrap();
        assert_eq!(
            out.doc,
            doc! { "_id": 1, "b": "x", "c": { "d": 1, "e": 2 }, "n": 2 }
        );
        assert_eq!(out.updated_fields, doc! { "c.e": 2, "n": 2 });
        assert_eq!(out.removed_fields, vec!["a".to_owned()]);
        assert_eq!(
            apply_update(&d, &doc! { "$set": { "_id": 2 } }, false)
                .unwrap_err()
                .code,
            66
        );
        assert_eq!(
            apply_update(&d, &doc! { "$inc": { "b": 1 } }, false)
                .unwrap_err()
                .code,
            14
        );
    }
}
