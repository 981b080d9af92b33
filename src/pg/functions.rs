//! PostgreSQL behaviour for functions whose DataFusion namesakes differ.

use std::sync::Arc;

use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature};

#[cfg(test)]
mod size_tests {
    #[test]
    fn vectors_in_every_text_form() {
        assert_eq!(super::vector_items("1 2"), vec![Some(1), Some(2)]);
        assert_eq!(super::vector_items("{3,x}"), vec![Some(3), None]);
        assert_eq!(super::vector_items("[4, 5]"), vec![Some(4), Some(5)]);
    }

    #[test]
    fn sizes_as_postgresql_prints_them() {
        assert_eq!(super::size_pretty(0), "0 bytes");
        assert_eq!(super::size_pretty(10239), "10239 bytes");
        assert_eq!(super::size_pretty(10240), "10 kB");
        assert_eq!(super::size_pretty(123_456_789), "118 MB");
        // No overflow at the ends of int8 (abs() of i64::MIN panicked in debug builds).
        assert_eq!(super::size_pretty(i64::MIN), "-8388608 TB");
        assert_eq!(super::size_pretty(i64::MAX), "8388608 TB");
    }
}

/// `json_build_object(key, value, …)`: a JSON object as text (SQLAlchemy's reflection builds
/// identity and collation details with it).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonBuildObject {
    signature: Signature,
}

impl JsonBuildObject {
    pub fn new() -> Self {
        JsonBuildObject { signature: Signature::variadic_any(datafusion::logical_expr::Volatility::Immutable) }
    }
}

impl Default for JsonBuildObject {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::util::display::array_value_to_string;
        if args.args.len() % 2 != 0 {
            return datafusion::common::plan_err!("argument list must have even number of elements");
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let rows = args.number_rows;
        let mut out = datafusion::arrow::array::StringBuilder::new();
        for r in 0..rows {
            let mut obj = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = array_value_to_string(&pair[0], r)?;
                let v = &pair[1];
                let value = if v.is_null(r) {
                    serde_json::Value::Null
                } else {
                    match v.data_type() {
                        DataType::Boolean => serde_json::Value::Bool(v.as_any().downcast_ref::<datafusion::arrow::array::BooleanArray>().map(|b| b.value(r)).unwrap_or(false)),
                        t if t.is_numeric() => serde_json::from_str(&array_value_to_string(v, r)?).unwrap_or(serde_json::Value::Null),
                        _ => serde_json::Value::String(array_value_to_string(v, r)?),
                    }
                };
                obj.insert(key, value);
            }
            out.append_value(serde_json::Value::Object(obj).to_string());
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `array[i]` as PostgreSQL reads it, on lists and on the catalogs' int2vector/oidvector
/// columns, which the static catalog holds as text ("1 2"): `pg_constraint.conkey[i]` in pgjdbc's
/// getImportedKeys, `pg_index.indkey[i]` in psqlODBC's SQLPrimaryKeys. Lists go to DataFusion's
/// own array_element.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgSubscript {
    signature: Signature,
}

impl PgSubscript {
    pub fn new() -> Self {
        PgSubscript { signature: Signature::any(2, datafusion::logical_expr::Volatility::Immutable) }
    }
}

impl Default for PgSubscript {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for PgSubscript {
    fn name(&self) -> &str {
        "pg_subscript"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match &args[0] {
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => Ok(DataType::Int64),
            _ => datafusion::functions_nested::extract::array_element_udf().return_type(args),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{AsArray, Int64Array};
        use datafusion::arrow::compute::cast;
        match args.args[0].data_type() {
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
                let arrays = ColumnarValue::values_to_arrays(&args.args)?;
                let texts = cast(&arrays[0], &DataType::Utf8)?;
                let texts = texts.as_string::<i32>();
                let idx = cast(&arrays[1], &DataType::Int64)?;
                let idx = idx.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let out: Int64Array = (0..texts.len())
                    .map(|r| {
                        if texts.is_null(r) || idx.is_null(r) || idx.value(r) < 1 {
                            return None;
                        }
                        vector_items(texts.value(r)).get(idx.value(r) as usize - 1).copied().flatten()
                    })
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
            _ => datafusion::functions_nested::extract::array_element_udf().invoke_with_args(args),
        }
    }
}

/// `has_table_privilege([user,] object, privileges)` and its schema, database, function and
/// column siblings, answered truthfully for a read-only server: a user may read (SELECT,
/// USAGE, CONNECT, EXECUTE) what they are served and may do nothing else (INSERT, UPDATE,
/// DELETE, TRUNCATE, REFERENCES, TRIGGER, CREATE, TEMPORARY, and any `WITH GRANT OPTION`).
/// A comma-separated list is true when any privilege in it is held, as in PostgreSQL.
/// (Metabase hides tables whose privilege columns are false.) Which objects a user is served
/// is the [`Objects`] check of the session's catalog; without one, every object.
pub struct HasPrivilege {
    name: &'static str,
    signature: Signature,
    objects: Option<Objects>,
}

/// An object a has_*_privilege function asks about, as its arguments name it (a relation by
/// name, possibly qualified, or by oid as digits; a column by name or number).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Object<'a> {
    Database(&'a str),
    Function(&'a str),
    Schema(&'a str),
    Relation(&'a str),
    Column(&'a str, &'a str),
}

/// Whether `user` (`None`: the session's own) is served an object: `Some(false)` for one
/// they are not served, `None` for an unknown oid (PostgreSQL's NULL).
pub type Objects = Arc<dyn Fn(Option<&str>, Object<'_>) -> Option<bool> + Send + Sync>;

impl std::fmt::Debug for HasPrivilege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HasPrivilege").field("name", &self.name).finish()
    }
}

impl PartialEq for HasPrivilege {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && match (&self.objects, &other.objects) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (a, b) => a.is_none() && b.is_none(),
            }
    }
}

impl Eq for HasPrivilege {}

impl std::hash::Hash for HasPrivilege {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// The has_*_privilege functions.
pub const PRIVILEGE_FUNCTIONS: &[&str] =
    &["has_table_privilege", "has_schema_privilege", "has_database_privilege", "has_any_column_privilege", "has_column_privilege", "has_function_privilege"];

impl HasPrivilege {
    pub fn new(name: &'static str, objects: Option<Objects>) -> Self {
        HasPrivilege { name, signature: Signature::variadic_any(datafusion::logical_expr::Volatility::Stable), objects }
    }

    /// The function's object, from its arguments without the leading user and the trailing
    /// privileges.
    fn object<'a>(&self, args: &[Option<&'a str>]) -> Option<Object<'a>> {
        Some(match (self.name, args) {
            ("has_column_privilege", [table, column]) => Object::Column((*table)?, (*column)?),
            ("has_database_privilege", [o]) => Object::Database((*o)?),
            ("has_function_privilege", [o]) => Object::Function((*o)?),
            ("has_schema_privilege", [o]) => Object::Schema((*o)?),
            (_, [o]) => Object::Relation((*o)?),
            _ => return None,
        })
    }
}

/// Whether a read-only server grants one privilege name (EXECUTE on functions, which
/// PostgreSQL grants to PUBLIC: psqlODBC's SQLProcedureColumns lists the functions
/// `has_function_privilege(oid, 'EXECUTE')`).
pub fn read_only_grants(privilege: &str) -> bool {
    let p = privilege.trim().to_ascii_uppercase();
    !p.contains("GRANT OPTION") && matches!(p.as_str(), "SELECT" | "USAGE" | "CONNECT" | "EXECUTE")
}

impl ScalarUDFImpl for HasPrivilege {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{AsArray, BooleanArray};
        use datafusion::arrow::compute::cast;
        // Without the user: the column function takes (table, column, privileges), the
        // others (object, privileges).
        let own = if self.name == "has_column_privilege" { 3 } else { 2 };
        if args.args.len() != own && args.args.len() != own + 1 {
            return datafusion::common::plan_err!("{} takes {} or {} arguments", self.name, own, own + 1);
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts = arrays.iter().map(|a| cast(a, &DataType::Utf8)).collect::<Result<Vec<_>, _>>()?;
        let texts: Vec<_> = texts.iter().map(|a| a.as_string::<i32>()).collect();
        let with_user = texts.len() == own + 1;
        let out: BooleanArray = (0..args.number_rows)
            .map(|i| {
                let value = |k: usize| texts[k].is_valid(i).then(|| texts[k].value(i));
                let privileges = value(texts.len() - 1)?;
                let user = if with_user { Some(value(0)?) } else { None };
                let named: Vec<Option<&str>> = (usize::from(with_user)..texts.len() - 1).map(value).collect();
                let object = self.object(&named)?;
                let served = match &self.objects {
                    Some(objects) => objects(user, object)?,
                    None => true,
                };
                Some(served && privileges.split(',').any(read_only_grants))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// The elements of an int2vector/oidvector or integer array in text form ("1 2", "{1,2}",
/// "[1, 2]"), in order; an element that is not an integer is None.
pub fn vector_items(text: &str) -> Vec<Option<i64>> {
    text.trim_matches(|c| matches!(c, '{' | '}' | '[' | ']'))
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().ok())
        .collect()
}

/// A list column, or an int2vector/oidvector column held as text, as text ("1 2"), for the
/// functions that take either.
pub fn array_texts(a: &datafusion::arrow::array::ArrayRef) -> Result<datafusion::arrow::array::ArrayRef> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::compute::cast;
    let list = match a.data_type() {
        DataType::List(_) => a.as_list::<i32>().clone(),
        DataType::LargeList(_) => cast(a, &DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new("item", DataType::Int64, true))))?.as_list::<i32>().clone(),
        _ => return Ok(cast(a, &DataType::Utf8)?),
    };
    let mut out = datafusion::arrow::array::StringBuilder::new();
    for r in 0..list.len() {
        if list.is_null(r) {
            out.append_null();
            continue;
        }
        let items = cast(&list.value(r), &DataType::Utf8)?;
        let items: Vec<&str> = items.as_string::<i32>().iter().map(|v| v.unwrap_or("")).collect();
        out.append_value(items.join(" "));
    }
    Ok(Arc::new(out.finish()))
}

/// The oid of the PostgreSQL type a value of an Arrow type is sent as (`frontend::encode`'s
/// choice, which its tests hold this to), for `pg_typeof()`; 0 (`unknown`) for NULL.
pub fn type_oid(dt: &DataType) -> i64 {
    use DataType::*;
    match dt {
        Null => 705,
        Boolean => 16,
        Int8 | Int16 | UInt8 => 21,
        Int32 | UInt16 => 23,
        Int64 | UInt32 => 20,
        Float16 | Float32 => 700,
        Float64 => 701,
        UInt64 | Decimal32(..) | Decimal64(..) | Decimal128(..) => 1700,
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => 17,
        Date32 | Date64 => 1082,
        Timestamp(_, None) => 1114,
        Timestamp(_, Some(_)) => 1184,
        Time32(_) | Time64(_) => 1083,
        Interval(_) | Duration(_) => 1186,
        Dictionary(_, v) => type_oid(v),
        List(f) | LargeList(f) | FixedSizeList(f, _) | ListView(f) | LargeListView(f) => match type_oid(f.data_type()) {
            16 => 1000,
            21 => 1005,
            23 => 1007,
            20 => 1016,
            700 => 1021,
            701 => 1022,
            25 => 1009,
            _ => 25,
        },
        _ => 25,
    }
}

/// How a measure of a database object answers: from the object (an oid or a name, as text)
/// and an optional second argument, a bigint, NULL, or an error with its SQLSTATE.
pub type Measure = Arc<dyn Fn(&str, Option<&str>) -> std::result::Result<Option<i64>, crate::error::Error> + Send + Sync>;

/// A function of a database object given by oid or by name, with an optional second text
/// argument, whose answer is a bigint: the size functions (`pg_table_size(oid)`, …), which
/// [`super::catalog`] registers over the relations served.
pub struct ObjectMeasure {
    name: &'static str,
    signature: Signature,
    answer: Measure,
}

impl ObjectMeasure {
    pub fn udf(name: &'static str, answer: impl Fn(&str, Option<&str>) -> std::result::Result<Option<i64>, crate::error::Error> + Send + Sync + 'static) -> ScalarUDF {
        let signature = Signature::variadic_any(datafusion::logical_expr::Volatility::Stable);
        ScalarUDF::from(ObjectMeasure { name, signature, answer: Arc::new(answer) })
    }
}

impl std::fmt::Debug for ObjectMeasure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectMeasure").field("name", &self.name).finish()
    }
}

impl PartialEq for ObjectMeasure {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.answer, &other.answer)
    }
}
impl Eq for ObjectMeasure {}
impl std::hash::Hash for ObjectMeasure {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl ScalarUDFImpl for ObjectMeasure {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{AsArray, Int64Builder};
        use datafusion::arrow::compute::cast;
        if !(1..=2).contains(&args.args.len()) {
            return datafusion::common::plan_err!("{} takes 1 or 2 arguments", self.name);
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let objects = cast(&arrays[0], &DataType::Utf8)?;
        let objects = objects.as_string::<i32>();
        let seconds = arrays.get(1).map(|a| cast(a, &DataType::Utf8)).transpose()?;
        let seconds = seconds.as_ref().map(|a| a.as_string::<i32>());
        let mut out = Int64Builder::with_capacity(args.number_rows);
        for r in 0..args.number_rows {
            let second = seconds.map(|a| a.is_valid(r).then(|| a.value(r)));
            if objects.is_null(r) || second == Some(None) {
                out.append_null();
                continue;
            }
            match (self.answer)(objects.value(r), second.flatten()) {
                Ok(v) => out.append_option(v),
                Err(e) => return Err(super::analyze::external(e)),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `pg_expandarray_items(array)`: the elements of an array (a list, or an int2vector/oidvector
/// in its text form "1 2") as a list of `{x: element, n: 1-based position}`, which
/// `information_schema._pg_expandarray` unnests.
fn expandarray_items() -> ScalarUDF {
    use datafusion::arrow::array::{Int32Builder, Int64Builder, ListBuilder, StructBuilder};
    use datafusion::arrow::datatypes::{Field, Fields};
    use datafusion::logical_expr::{Volatility, create_udf};
    let fields = Fields::from(vec![Field::new("x", DataType::Int64, true), Field::new("n", DataType::Int32, false)]);
    let item = Field::new("item", DataType::Struct(fields.clone()), true);
    let ret = DataType::List(Arc::new(item.clone()));
    create_udf(
        "pg_expandarray_items",
        vec![DataType::Utf8],
        ret,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            use datafusion::arrow::array::AsArray;
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let texts = arrays[0].as_string::<i32>();
            let mut b = ListBuilder::new(StructBuilder::new(
                fields.clone(),
                vec![Box::new(Int64Builder::new()), Box::new(Int32Builder::new())],
            ))
            .with_field(Arc::new(item.clone()));
            for i in 0..texts.len() {
                if texts.is_null(i) {
                    b.append(false);
                    continue;
                }
                let items = vector_items(texts.value(i));
                let sb = b.values();
                for (k, v) in items.iter().enumerate() {
                    sb.field_builder::<Int64Builder>(0).expect("x").append_option(*v);
                    sb.field_builder::<Int32Builder>(1).expect("n").append_value(k as i32 + 1);
                    sb.append(true);
                }
                b.append(true);
            }
            Ok(ColumnarValue::Array(Arc::new(b.finish())))
        }),
    )
}

/// `regexp_split_to_array(text, pattern [, flags])`: the pieces of a text between the matches
/// of a regular expression, as PostgreSQL splits (a zero-length match at either end of the
/// text is ignored, so `''` splits into characters); flag `i` matches case-insensitively, `x`
/// ignores spaces in the pattern. `regexp_split_to_table` is its unnest
/// ([`super::rewrite::set_returning_calls`]): pgcli's casing query splits function bodies
/// into words.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RegexpSplit {
    signature: Signature,
}

impl RegexpSplit {
    pub fn new() -> Self {
        use datafusion::logical_expr::{TypeSignature, Volatility};
        let text = |n: usize| TypeSignature::Exact(vec![DataType::Utf8; n]);
        RegexpSplit { signature: Signature::one_of(vec![text(2), text(3)], Volatility::Immutable) }
    }
}

impl Default for RegexpSplit {
    fn default() -> Self {
        Self::new()
    }
}

/// The pieces of `text` between the matches of `re`, as PostgreSQL's regexp_split_to_array.
pub fn regexp_split(re: &regex::Regex, text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for m in re.find_iter(text) {
        if m.is_empty() && (m.start() == 0 || m.start() == text.len()) {
            continue;
        }
        pieces.push(text[start..m.start()].to_string());
        start = m.end();
    }
    pieces.push(text[start..].to_string());
    pieces
}

/// A PostgreSQL regular expression with its flags, for Rust's regex engine.
fn pg_regex(pattern: &str, flags: &str) -> Result<regex::Regex> {
    let mut prefix = String::new();
    for f in flags.chars() {
        match f {
            'i' => prefix.push_str("(?i)"),
            'x' => prefix.push_str("(?x)"),
            'c' => {}
            'g' => return datafusion::common::plan_err!("regexp_split_to_array() does not support the \"global\" option"),
            other => return datafusion::common::plan_err!("invalid regular expression option: \"{other}\""),
        }
    }
    regex::Regex::new(&format!("{prefix}{pattern}")).map_err(|e| DataFusionError::Execution(format!("invalid regular expression: {e}")))
}

impl ScalarUDFImpl for RegexpSplit {
    fn name(&self) -> &str {
        "regexp_split_to_array"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new("item", DataType::Utf8, true))))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{AsArray, ListBuilder, StringBuilder};
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts = arrays[0].as_string::<i32>();
        let patterns = arrays[1].as_string::<i32>();
        let flags = arrays.get(2).map(|f| f.as_string::<i32>());
        let mut compiled: Option<(String, String, regex::Regex)> = None;
        let mut out = ListBuilder::new(StringBuilder::new());
        for r in 0..args.number_rows {
            let flag = flags.map(|f| f.is_valid(r).then(|| f.value(r))).unwrap_or(Some(""));
            let (Some(flag), true, true) = (flag, texts.is_valid(r), patterns.is_valid(r)) else {
                out.append(false);
                continue;
            };
            let pattern = patterns.value(r);
            if !matches!(&compiled, Some((p, f, _)) if p == pattern && f == flag) {
                compiled = Some((pattern.to_string(), flag.to_string(), pg_regex(pattern, flag)?));
            }
            let re = &compiled.as_ref().expect("compiled above").2;
            for piece in regexp_split(re, texts.value(r)) {
                out.values().append_value(piece);
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// PostgreSQL's pg_size_pretty: bytes below 10 kB, then kB, MB, GB, TB, each unit used
/// while the rounded value stays below 10240 of it (psql's `\dt+` and `\l+` size columns).
pub fn size_pretty(bytes: i64) -> String {
    let mut size = bytes;
    if size.unsigned_abs() < 10 * 1024 {
        return format!("{size} bytes");
    }
    for unit in ["kB", "MB", "GB", "TB"] {
        // Halve, then round: PostgreSQL's half_rounded().
        let half_rounded = |v: i64| if v >= 0 { (v + 1) / 2 } else { (v - 1) / 2 };
        let next = size / 512;
        if half_rounded(next).unsigned_abs() < 10 * 1024 || unit == "TB" {
            return format!("{} {unit}", half_rounded(next));
        }
        size /= 1024;
    }
    unreachable!()
}

/// Registers lakecube's PostgreSQL functions (after datafusion-pg-catalog's, so that ours win
/// where both define one).
/// The rows a scalar function computes: one when every argument is a scalar (a constant the
/// optimizer folds), else the batch's.
pub fn result_rows(args: &ScalarFunctionArgs) -> usize {
    if all_scalar(&args.args) { 1 } else { args.number_rows }
}

fn all_scalar(args: &[ColumnarValue]) -> bool {
    args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)))
}

/// A function's result computed as an array: a scalar when every argument was one.
pub fn result_shape(args: &[ColumnarValue], out: datafusion::arrow::array::ArrayRef) -> Result<ColumnarValue> {
    scalar_if(all_scalar(args) && out.len() == 1, out)
}

/// `out`'s one value as a scalar when `scalar` (the function's input was one), else `out`.
pub fn scalar_if(scalar: bool, out: datafusion::arrow::array::ArrayRef) -> Result<ColumnarValue> {
    Ok(if scalar { ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?) } else { ColumnarValue::Array(out) })
}

pub fn register(ctx: &datafusion::prelude::SessionContext) {
    use datafusion::logical_expr::{Volatility, create_udf};
    super::formatting::register(ctx);
    super::calendar::register(ctx);
    super::math::register(ctx);
    // ceiling(x): PostgreSQL's other name of ceil(x).
    ctx.register_udf(datafusion::functions::math::ceil().as_ref().clone().with_aliases(["ceiling"]));
    // version(): SQLAlchemy and Npgsql parse "PostgreSQL <major>.<minor>" from it.
    let version = format!(
        "PostgreSQL {} (lakecube {}) on {}-linux, compiled by rustc, 64-bit",
        super::settings::SERVER_VERSION,
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(version.clone()))))),
    ));
    // Text functions whose answer is always NULL here: pg_get_serial_sequence(table, column)
    // (lakecube has no sequences, so no column owns one; SQLAlchemy's column reflection asks)
    // and shobj_description(oid, catalog) (the comment on a database, role or tablespace:
    // lakecube describes none; psql's \\l+).
    for (name, inputs) in [("pg_get_serial_sequence", [DataType::Utf8, DataType::Utf8]), ("shobj_description", [DataType::Int64, DataType::Utf8])] {
        ctx.register_udf(create_udf(
            name,
            inputs.to_vec(),
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(|args: &[ColumnarValue]| {
                let n = ColumnarValue::values_to_arrays(args)?[0].len();
                Ok(ColumnarValue::Array(Arc::new(StringArray::from(vec![None::<&str>; n]))))
            }),
        ));
    }
    // Visibility tests: every function, type and collation lives in pg_catalog, which is
    // always on the search path (psql's \\df and \\dT, SQLAlchemy's reflection).
    for name in ["pg_function_is_visible", "pg_type_is_visible", "pg_collation_is_visible"] {
        ctx.register_udf(create_udf(
            name,
            vec![DataType::Int64],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|args: &[ColumnarValue]| {
                let a = ColumnarValue::values_to_arrays(args)?;
                let out: datafusion::arrow::array::BooleanArray = (0..a[0].len()).map(|i| a[0].is_valid(i).then_some(true)).collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }),
        ));
    }
    ctx.register_udf(ScalarUDF::from(JsonBuildObject::new()));
    ctx.register_udf(expandarray_items());
    // pg_vector_items(text): an int2vector/oidvector held as text ("1 2") as a list of integers.
    ctx.register_udf(create_udf(
        "pg_vector_items",
        vec![DataType::Utf8],
        DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new("item", DataType::Int64, true))),
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            use datafusion::arrow::array::{AsArray, Int64Builder, ListBuilder};
            let a = ColumnarValue::values_to_arrays(args)?;
            let texts = a[0].as_string::<i32>();
            let mut b = ListBuilder::new(Int64Builder::new());
            for v in texts.iter() {
                match v {
                    Some(t) => {
                        b.values().extend(vector_items(t));
                        b.append(true);
                    }
                    None => b.append(false),
                }
            }
            Ok(ColumnarValue::Array(Arc::new(b.finish())))
        }),
    ));
    for name in PRIVILEGE_FUNCTIONS {
        ctx.register_udf(ScalarUDF::from(HasPrivilege::new(name, None)));
    }
    ctx.register_udf(create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            use datafusion::arrow::array::AsArray;
            let a = ColumnarValue::values_to_arrays(args)?;
            let sizes = a[0].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            let out: StringArray =
                (0..sizes.len()).map(|i| (!sizes.is_null(i)).then(|| size_pretty(sizes.value(i)))).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    ));
    ctx.register_udf(ScalarUDF::from(PgSubscript::new()));
    ctx.register_udf(ScalarUDF::from(Format::new()));
    for (name, quote) in [("quote_ident", quote_ident as fn(&str) -> String), ("quote_literal", quote_literal)] {
        ctx.register_udf(create_udf(
            name,
            vec![DataType::Utf8],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(move |args: &[ColumnarValue]| {
                use datafusion::arrow::array::AsArray;
                let a = ColumnarValue::values_to_arrays(args)?;
                let out: StringArray = a[0].as_string::<i32>().iter().map(|v| v.map(quote)).collect();
                Ok(ColumnarValue::Array(Arc::new(out)))
            }),
        ));
    }
    // pg_tablespace_location(oid): '' for the default tablespaces, the only ones there are
    // (psql's \\db). pg_my_temp_schema(): 0, as for a session without temporary tables
    // (lakecube has none).
    ctx.register_udf(create_udf(
        "pg_tablespace_location",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let a = ColumnarValue::values_to_arrays(args)?;
            let out: StringArray = (0..a[0].len()).map(|i| a[0].is_valid(i).then_some("")).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    ));
    ctx.register_udf(create_udf(
        "pg_my_temp_schema",
        vec![],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Int32(Some(0))))),
    ));
    ctx.register_udf(ScalarUDF::from(RegexpSplit::new()));
    // pg_advisory_unlock_all(): asyncpg's pool reset; lakecube takes no advisory locks, so
    // there is never one to release. PostgreSQL returns void, shown as an empty value.
    ctx.register_udf(create_udf(
        "pg_advisory_unlock_all",
        vec![],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(String::new()))))),
    ));
}

/// PostgreSQL's reserved key words (and the type-function names it also quotes): an
/// identifier spelled like one must be quoted by `quote_ident` and `format('%I')`.
const RESERVED: &[&str] = &[
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "authorization", "binary", "both",
    "case", "cast", "check", "collate", "collation", "column", "concurrently", "constraint", "create", "cross",
    "current_catalog", "current_date", "current_role", "current_schema", "current_time", "current_timestamp",
    "current_user", "default", "deferrable", "desc", "distinct", "do", "else", "end", "except", "false", "fetch",
    "for", "foreign", "freeze", "from", "full", "grant", "group", "having", "ilike", "in", "initially", "inner",
    "intersect", "into", "is", "isnull", "join", "lateral", "leading", "left", "like", "limit", "localtime",
    "localtimestamp", "natural", "not", "notnull", "null", "offset", "on", "only", "or", "order", "outer",
    "overlaps", "placing", "primary", "references", "returning", "right", "select", "session_user", "similar",
    "some", "symmetric", "system_user", "table", "tablesample", "then", "to", "trailing", "true", "union", "unique",
    "user", "using", "variadic", "verbose", "when", "where", "window", "with",
];

/// PostgreSQL's `quote_ident`: the identifier as is when it reads back unchanged unquoted
/// (lower case letters, digits, `_`, `$`, not starting with a digit or `$`, not a reserved
/// word), else in double quotes with inner quotes doubled.
pub fn quote_ident(id: &str) -> String {
    let plain = id.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !RESERVED.contains(&id);
    if plain { id.to_string() } else { format!("\"{}\"", id.replace('"', "\"\"")) }
}

/// PostgreSQL's `quote_literal`: single quotes, inner quotes doubled; with a backslash inside,
/// the `E'…'` form with backslashes doubled.
pub fn quote_literal(s: &str) -> String {
    if s.contains('\\') {
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// PostgreSQL's `format(template, args…)`: `%s` (text, NULL as empty), `%I` (identifier,
/// quoted as needed), `%L` (literal, NULL as `NULL`), `%%`, with an optional argument
/// position `n$`, `-` flag and width. Metabase's field sync casts `format('%I.%I', schema,
/// table)` to regclass. Errors read as PostgreSQL's.
/// A result over [`super::bounded::MAX_VALUE_BYTES`] is refused (54000), the other errors are
/// PostgreSQL's 22023.
pub fn pg_format(template: &str, args: &[Option<String>]) -> std::result::Result<String, DataFusionError> {
    let invalid = |m: &str| DataFusionError::External(Box::new(crate::error::Error::new(crate::error::ErrorKind::InvalidParameterValue, m)));
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    let mut next_arg = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // [n$][-][width]type
        let mut spec = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_digit() || d == '$' || d == '-' {
                spec.push(d);
                chars.next();
            } else {
                break;
            }
        }
        let (position, rest) = match spec.split_once('$') {
            Some((n, rest)) => (Some(n.parse::<usize>().map_err(|_| invalid("invalid argument position in format()"))?), rest),
            None => (None, spec.as_str()),
        };
        let left = rest.starts_with('-');
        let digits = rest.trim_start_matches('-');
        let width: usize = match digits {
            "" => 0,
            // PostgreSQL reads widths as int4.
            d => d.parse::<i32>().map_err(|_| invalid("number is out of range"))? as usize,
        };
        let kind = chars.next().ok_or_else(|| invalid("unterminated format() type specifier"))?;
        let index = match position {
            Some(0) => return Err(invalid("format specifies argument 0, but arguments are numbered from 1")),
            Some(n) => n - 1,
            None => next_arg,
        };
        next_arg = index + 1;
        let arg = args.get(index).ok_or_else(|| invalid("too few arguments for format()"))?;
        let text = match kind {
            's' => arg.clone().unwrap_or_default(),
            'I' => quote_ident(arg.as_deref().ok_or_else(|| invalid("null values cannot be formatted as an SQL identifier"))?),
            'L' => arg.as_deref().map(quote_literal).unwrap_or_else(|| "NULL".into()),
            other => return Err(invalid(&format!("unrecognized format() type specifier \"{other}\""))),
        };
        let pad = width.saturating_sub(text.chars().count());
        let length = (out.len() + pad + text.len()) as u128;
        if length > super::bounded::MAX_VALUE_BYTES {
            return Err(super::bounded::too_large("format", length, 1));
        }
        if left {
            out.push_str(&text);
            out.extend(std::iter::repeat_n(' ', pad));
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&text);
        }
    }
    Ok(out)
}

/// `format(template, args…)` as a variadic UDF over [`pg_format`]. Arguments print as
/// PostgreSQL's text output would (booleans as t/f).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Format {
    signature: Signature,
}

impl Format {
    pub fn new() -> Self {
        Format { signature: Signature::variadic_any(datafusion::logical_expr::Volatility::Stable) }
    }
}

impl Default for Format {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{AsArray, BooleanArray};
        use datafusion::arrow::util::display::array_value_to_string;
        if args.args.is_empty() {
            return datafusion::common::plan_err!("function format() requires at least one argument");
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let text = |a: &Arc<dyn Array>, r: usize| -> Result<Option<String>> {
            if a.is_null(r) {
                return Ok(None);
            }
            Ok(Some(match a.data_type() {
                DataType::Boolean => if a.as_any().downcast_ref::<BooleanArray>().is_some_and(|b| b.value(r)) { "t" } else { "f" }.to_string(),
                DataType::Utf8 => a.as_string::<i32>().value(r).to_string(),
                _ => array_value_to_string(a, r)?,
            }))
        };
        let mut out = datafusion::arrow::array::StringBuilder::new();
        let mut budget = super::bounded::Budget::new("format");
        for r in 0..args.number_rows {
            let Some(template) = text(&arrays[0], r)? else {
                out.append_null();
                continue;
            };
            let values = arrays[1..].iter().map(|a| text(a, r)).collect::<Result<Vec<_>>>()?;
            let s = pg_format(&template, &values)?;
            budget.add(s.len() as u128)?;
            out.append_value(s);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod format_tests {
    use super::pg_format;

    fn f(t: &str, args: &[Option<&str>]) -> Result<String, String> {
        pg_format(t, &args.iter().map(|a| a.map(str::to_string)).collect::<Vec<_>>())
            .map_err(|e| crate::error::Error::from(e).message)
    }

    #[test]
    fn formats_as_postgresql() {
        assert_eq!(f("%I.%I", &[Some("public"), Some("retail")]).unwrap(), "public.retail");
        assert_eq!(f("%I.%I", &[Some("My Schema"), Some("select")]).unwrap(), "\"My Schema\".\"select\"");
        assert_eq!(f("\"%s\".\"%s\"", &[Some("a"), None]).unwrap(), "\"a\".\"\"");
        assert_eq!(f("%L and %L", &[Some("it's"), None]).unwrap(), "'it''s' and NULL");
        assert_eq!(f("%2$s %1$s %%", &[Some("a"), Some("b")]).unwrap(), "b a %");
        assert_eq!(f("[%-5s|%5s]", &[Some("ab"), Some("cd")]).unwrap(), "[ab   |   cd]");
        assert!(f("%s %s", &[Some("a")]).unwrap_err().contains("too few arguments"));
        assert!(f("%I", &[None]).unwrap_err().contains("null values"));
        assert!(f("%x", &[Some("a")]).unwrap_err().contains("unrecognized"));
        // Widths: int4 like PostgreSQL's, and no value over 1 GB (the server used to abort).
        assert!(f("%1000000000000s", &[Some("x")]).unwrap_err().contains("out of range"));
        assert!(f("%2000000000s", &[Some("x")]).unwrap_err().contains("requested length too large"));
        let e: crate::error::Error = super::pg_format("%2000000000s", &[Some("x".into())]).unwrap_err().into();
        assert_eq!(e.sqlstate(), "54000");
    }
}
