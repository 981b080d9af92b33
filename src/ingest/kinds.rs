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
