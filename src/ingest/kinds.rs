//! The kinds of source and the fields each carries: names, types, whether required, and the
//! built-in export headers accepted for them (English and French, as retail tools write them).
//! The bottom of `ingest`: it knows only the lake's table names.

use serde::Deserialize;

/// What the rows are, and so where they go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Door-sensor counts per store, zone and interval: summed into hourly `footfall`.
    SensorCounts,
    /// Point-of-sale ticket lines: hourly `transactions` (distinct tickets), `revenue`, `units`.
    PosTickets,
    /// Store reference rows, upserted into `stores` by store code.
    Stores,
    /// Department reference rows, upserted into `departments` by department code.
    Departments,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::SensorCounts => "sensor_counts",
            Kind::PosTickets => "pos_tickets",
            Kind::Stores => "stores",
            Kind::Departments => "departments",
        }
    }

    /// The lake table a source of this kind writes.
    pub fn target(self) -> &'static str {
        match self {
            Kind::SensorCounts | Kind::PosTickets => crate::storage::schema::TRAFFIC,
            Kind::Stores => crate::storage::schema::STORES,
            Kind::Departments => crate::storage::schema::DEPARTMENTS,
        }
    }

    /// The field that dates a row of the lake's grain (`None` for the reference kinds).
    pub fn time_field(self) -> Option<&'static FieldSpec> {
        match self {
            Kind::SensorCounts => Some(&SENSOR_FIELDS[sensor::INTERVAL_START]),
            Kind::PosTickets => Some(&TICKET_FIELDS[ticket::TIMESTAMP]),
            Kind::Stores | Kind::Departments => None,
        }
    }
}

/// How a field's values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Text,
    Integer,
    Decimal,
    Timestamp,
    /// A date (a date-time's date part).
    Date,
}

/// One target field of a kind of source.
#[derive(Debug)]
pub struct FieldSpec {
    pub name: &'static str,
    pub ty: FieldType,
    pub required: bool,
    /// Built-in headers accepted for it (normalized with [`super::fields::normalize`] when
    /// matched).
    pub aliases: &'static [&'static str],
}

const STORE: &[&str] = &["store", "store code", "store id", "shop", "shop code", "site", "site code", "magasin", "code magasin", "boutique", "code boutique"];
const DEPARTMENT: &[&str] =
    &["department", "department code", "dept", "dept code", "zone", "zone code", "area", "rayon", "code rayon", "departement", "code departement"];

const SENSOR_FIELDS: &[FieldSpec] = &[
    FieldSpec { name: "store_code", ty: FieldType::Text, required: true, aliases: STORE },
    FieldSpec { name: "zone_code", ty: FieldType::Text, required: true, aliases: DEPARTMENT },
    FieldSpec {
        name: "interval_start",
        ty: FieldType::Timestamp,
        required: true,
        aliases: &["interval start", "start", "start time", "timestamp", "time", "datetime", "date time", "period", "debut", "date heure", "horodatage", "date"],
    },
    FieldSpec {
        name: "count_in",
        ty: FieldType::Integer,
        required: true,
        aliases: &["in", "ins", "count in", "entries", "entry", "enters", "visitors in", "entrees", "entree", "nb entrees", "comptage entrees"],
    },
    FieldSpec { name: "count_out", ty: FieldType::Integer, required: false, aliases: &["out", "outs", "count out", "exits", "exit", "visitors out", "sorties", "sortie", "nb sorties"] },
];

const TICKET_FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: "ticket_id",
        ty: FieldType::Text,
        required: true,
        aliases: &["ticket", "ticket id", "ticket no", "ticket number", "receipt", "receipt id", "receipt no", "transaction id", "numero ticket", "no ticket", "num ticket", "n ticket", "n de ticket"],
    },
    FieldSpec { name: "store_code", ty: FieldType::Text, required: true, aliases: STORE },
    FieldSpec { name: "department_code", ty: FieldType::Text, required: true, aliases: DEPARTMENT },
    FieldSpec {
        name: "timestamp",
        ty: FieldType::Timestamp,
        required: true,
        aliases: &["time", "datetime", "date time", "sale time", "sold at", "date heure", "horodatage", "date vente", "date"],
    },
    FieldSpec { name: "amount", ty: FieldType::Decimal, required: true, aliases: &["amount", "total", "value", "sales", "revenue", "line total", "montant", "montant ttc", "ca", "prix total"] },
    FieldSpec { name: "quantity", ty: FieldType::Integer, required: true, aliases: &["quantity", "qty", "units", "items", "quantite", "qte", "nb articles"] },
];

const fn text(name: &'static str, required: bool, aliases: &'static [&'static str]) -> FieldSpec {
    FieldSpec { name, ty: FieldType::Text, required, aliases }
}

/// A `stores` source's fields: the lake's `stores` columns but the key.
const STORE_FIELDS: &[FieldSpec] = &[
    text("store_code", true, STORE),
    text("store_name", false, &["store name", "name", "shop name", "nom", "nom magasin", "libelle", "libelle magasin", "enseigne"]),
    text("city", false, &["city", "town", "ville", "commune"]),
    text("region", false, &["region", "state", "province"]),
    text("country", false, &["country", "country code", "pays"]),
    text("store_format", false, &["format", "store format", "store type", "type", "format magasin", "type magasin"]),
    FieldSpec { name: "surface_m2", ty: FieldType::Integer, required: false, aliases: &["surface", "surface m2", "m2", "sqm", "size", "area m2", "superficie"] },
    FieldSpec { name: "opened_on", ty: FieldType::Date, required: false, aliases: &["opened", "opened on", "opening date", "open date", "ouverture", "date ouverture"] },
    FieldSpec { name: "closed_on", ty: FieldType::Date, required: false, aliases: &["closed", "closed on", "closing date", "fermeture", "date fermeture"] },
];

/// A `departments` source's fields.
const DEPARTMENT_FIELDS: &[FieldSpec] = &[
    text("department_code", true, DEPARTMENT),
    text("department", false, &["department name", "name", "label", "libelle", "nom", "nom rayon", "libelle rayon"]),
    text("department_family", false, &["family", "department family", "famille", "famille rayon", "univers"]),
];

/// A kind's fields, in the order every per-field list follows ([`super::fields::HeaderMap`]'s
/// columns).
pub fn fields_of(kind: Kind) -> &'static [FieldSpec] {
    match kind {
        Kind::SensorCounts => SENSOR_FIELDS,
        Kind::PosTickets => TICKET_FIELDS,
        Kind::Stores => STORE_FIELDS,
        Kind::Departments => DEPARTMENT_FIELDS,
    }
}

/// The fields of a `sensor_counts` record, by name: indices into [`SENSOR_FIELDS`] (and so into
/// a [`super::fields::HeaderMap`]'s columns).
pub mod sensor {
    use super::{SENSOR_FIELDS as F, position};
    pub const STORE_CODE: usize = position(F, "store_code");
    pub const ZONE_CODE: usize = position(F, "zone_code");
    pub const INTERVAL_START: usize = position(F, "interval_start");
    pub const COUNT_IN: usize = position(F, "count_in");
    pub const COUNT_OUT: usize = position(F, "count_out");
}

/// The fields of a `pos_tickets` record, by name: indices into [`TICKET_FIELDS`].
pub mod ticket {
    use super::{TICKET_FIELDS as F, position};
    pub const TICKET_ID: usize = position(F, "ticket_id");
    pub const STORE_CODE: usize = position(F, "store_code");
    pub const DEPARTMENT_CODE: usize = position(F, "department_code");
    pub const TIMESTAMP: usize = position(F, "timestamp");
    pub const AMOUNT: usize = position(F, "amount");
    pub const QUANTITY: usize = position(F, "quantity");
}

/// The field that keys a `stores` record's member (its code): an index into [`STORE_FIELDS`].
pub const STORE_KEY: usize = position(STORE_FIELDS, "store_code");
/// The field that keys a `departments` record's member: an index into [`DEPARTMENT_FIELDS`].
pub const DEPARTMENT_KEY: usize = position(DEPARTMENT_FIELDS, "department_code");

/// The index of the field `name` in `fields`, found at compile time (a name the table lacks does
/// not compile), so that a table's order is written once, in the table.
const fn position(fields: &[FieldSpec], name: &str) -> usize {
    let mut i = 0;
    while i < fields.len() {
        if same(fields[i].name.as_bytes(), name.as_bytes()) {
            return i;
        }
        i += 1;
    }
    panic!("no such field in the table");
}

/// `a == b`, in a const fn.
const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}
