//! Reference data the generator draws from: places, departments, formats, holidays.

use chrono::{Datelike, NaiveDate, Weekday};

/// A city where stores can be, with the weight of its catchment (≈ metro population, millions).
#[derive(Debug)]
pub struct City {
    pub name: &'static str,
    pub code: &'static str,
    pub region: &'static str,
    pub country: Country,
    pub weight: f64,
    pub districts: &'static [&'static str],
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Country {
    France,
    Belgium,
    Spain,
}

impl Country {
    pub fn name(self) -> &'static str {
        match self {
            Country::France => "France",
            Country::Belgium => "Belgium",
            Country::Spain => "Spain",
        }
    }
    pub fn iso(self) -> &'static str {
        match self {
            Country::France => "FR",
            Country::Belgium => "BE",
            Country::Spain => "ES",
        }
    }
}

pub const CITIES: &[City] = &[
    City { name: "Paris", code: "PAR", region: "Île-de-France", country: Country::France, weight: 11.0, districts: &["Rivoli", "Opéra", "Montparnasse", "Bastille", "La Défense", "Bercy", "Les Halles", "Passy"] },
    City { name: "Versailles", code: "VER", region: "Île-de-France", country: Country::France, weight: 1.2, districts: &["Parly 2", "Notre-Dame", "Chantiers"] },
    City { name: "Lyon", code: "LYO", region: "Auvergne-Rhône-Alpes", country: Country::France, weight: 2.3, districts: &["Part-Dieu", "Confluence", "Bellecour", "Vaise"] },
    City { name: "Grenoble", code: "GRE", region: "Auvergne-Rhône-Alpes", country: Country::France, weight: 0.7, districts: &["Grand'Place", "Victor Hugo"] },
    City { name: "Marseille", code: "MRS", region: "Provence-Alpes-Côte d'Azur", country: Country::France, weight: 1.9, districts: &["Terrasses du Port", "Canebière", "Prado", "Valentine"] },
    City { name: "Nice", code: "NCE", region: "Provence-Alpes-Côte d'Azur", country: Country::France, weight: 1.0, districts: &["Masséna", "Cap 3000", "Airport T2"] },
    City { name: "Toulouse", code: "TLS", region: "Occitanie", country: Country::France, weight: 1.4, districts: &["Capitole", "Blagnac", "Labège"] },
    City { name: "Montpellier", code: "MPL", region: "Occitanie", country: Country::France, weight: 0.8, districts: &["Polygone", "Odysseum"] },
    City { name: "Bordeaux", code: "BDX", region: "Nouvelle-Aquitaine", country: Country::France, weight: 1.3, districts: &["Sainte-Catherine", "Mériadeck", "Lac"] },
    City { name: "Lille", code: "LIL", region: "Hauts-de-France", country: Country::France, weight: 1.2, districts: &["Euralille", "Grand Place", "V2"] },
    City { name: "Strasbourg", code: "SXB", region: "Grand Est", country: Country::France, weight: 0.8, districts: &["Kléber", "Rivetoile"] },
    City { name: "Bruxelles", code: "BRU", region: "Bruxelles-Capitale", country: Country::Belgium, weight: 2.1, districts: &["Louise", "Toison d'Or", "Woluwe", "Zaventem"] },
    City { name: "Antwerpen", code: "ANR", region: "Flandre", country: Country::Belgium, weight: 1.1, districts: &["Meir", "Wijnegem"] },
    City { name: "Gent", code: "GNE", region: "Flandre", country: Country::Belgium, weight: 0.6, districts: &["Veldstraat", "Zuid"] },
    City { name: "Liège", code: "LGG", region: "Wallonie", country: Country::Belgium, weight: 0.7, districts: &["Médiacité", "Carré"] },
    City { name: "Madrid", code: "MAD", region: "Comunidad de Madrid", country: Country::Spain, weight: 6.7, districts: &["Gran Vía", "Salamanca", "La Vaguada", "Barajas T4"] },
    City { name: "Barcelona", code: "BCN", region: "Cataluña", country: Country::Spain, weight: 5.6, districts: &["Passeig de Gràcia", "Diagonal Mar", "La Maquinista", "El Prat"] },
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Mall,
    HighStreet,
    Outlet,
    Airport,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Mall => "mall",
            Format::HighStreet => "high_street",
            Format::Outlet => "outlet",
            Format::Airport => "airport",
        }
    }

    /// Opening hours `[open, close)` for a weekday, or `None` when closed all day.
    pub fn hours(self, weekday: Weekday, country: Country) -> Option<(u32, u32)> {
        use Weekday::*;
        match (self, weekday) {
            (Format::Mall, Sun) if country == Country::Belgium => None,
            (Format::Mall, Sun) => Some((11, 19)),
            (Format::Mall, _) => Some((10, 21)),
            (Format::HighStreet, Sun) => None,
            (Format::HighStreet, _) => Some((9, 20)),
            (Format::Outlet, _) => Some((10, 20)),
            (Format::Airport, _) => Some((6, 22)),
        }
    }

    /// Airports trade on public holidays; everyone else closes.
    pub fn closes_on_holidays(self) -> bool {
        self != Format::Airport
    }

    /// Visitors entering the store per hour at an average hour of an average day.
    pub fn base_visitors(self) -> f64 {
        match self {
            Format::Mall => 260.0,
            Format::HighStreet => 150.0,
            Format::Outlet => 210.0,
            Format::Airport => 230.0,
        }
    }

    pub fn conversion_factor(self) -> f64 {
        match self {
            Format::Mall => 0.95,
            Format::HighStreet => 1.05,
            Format::Outlet => 1.2,
            Format::Airport => 0.8,
        }
    }

    pub fn basket_factor(self) -> f64 {
        match self {
            Format::Mall => 1.0,
            Format::HighStreet => 1.05,
            Format::Outlet => 0.72,
            Format::Airport => 1.2,
        }
    }

    /// Typical selling surface in m².
    pub fn surface(self) -> (i32, i32) {
        match self {
            Format::Mall => (2500, 9000),
            Format::HighStreet => (800, 3500),
            Format::Outlet => (1500, 5000),
            Format::Airport => (300, 1200),
        }
    }
}

pub struct Department {
    pub code: &'static str,
    pub name: &'static str,
    pub family: &'static str,
    /// Share of store visitors who enter this department.
    pub share: f64,
    /// Typical ticket conversion (transactions / footfall).
    pub conversion: f64,
    /// Typical ticket value, euros.
    pub basket: f64,
    /// Typical units per ticket.
    pub units_per_ticket: f64,
}

/// The departments, in the order `--departments N` takes them (families mixed early on).
pub const DEPARTMENTS: &[Department] = &[
    Department { code: "D01", name: "Womenswear", family: "Fashion", share: 0.42, conversion: 0.22, basket: 64.0, units_per_ticket: 2.1 },
    Department { code: "D02", name: "Beauty", family: "Health & Beauty", share: 0.30, conversion: 0.31, basket: 37.0, units_per_ticket: 2.4 },
    Department { code: "D03", name: "Home", family: "Home", share: 0.24, conversion: 0.17, basket: 54.0, units_per_ticket: 2.0 },
    Department { code: "D04", name: "Electronics", family: "Leisure", share: 0.22, conversion: 0.12, basket: 148.0, units_per_ticket: 1.2 },
    Department { code: "D05", name: "Menswear", family: "Fashion", share: 0.28, conversion: 0.24, basket: 71.0, units_per_ticket: 1.8 },
    Department { code: "D06", name: "Sports", family: "Leisure", share: 0.20, conversion: 0.19, basket: 61.0, units_per_ticket: 1.6 },
    Department { code: "D07", name: "Shoes", family: "Fashion", share: 0.25, conversion: 0.18, basket: 83.0, units_per_ticket: 1.3 },
    Department { code: "D08", name: "Grocery", family: "Food", share: 0.35, conversion: 0.34, basket: 29.0, units_per_ticket: 6.5 },
    Department { code: "D09", name: "Kidswear", family: "Fashion", share: 0.18, conversion: 0.26, basket: 42.0, units_per_ticket: 2.6 },
    Department { code: "D10", name: "Toys", family: "Leisure", share: 0.15, conversion: 0.21, basket: 33.0, units_per_ticket: 1.7 },
    Department { code: "D11", name: "Books & Music", family: "Leisure", share: 0.14, conversion: 0.23, basket: 24.0, units_per_ticket: 1.9 },
    Department { code: "D12", name: "Garden", family: "Home", share: 0.10, conversion: 0.15, basket: 47.0, units_per_ticket: 2.2 },
];

/// Relative visitors by hour of day (index = hour), before the weekday factor.
pub fn hour_shape(hour: u32, weekend: bool) -> f64 {
    const WEEKDAY: [f64; 24] = [
        0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.35, 0.45, 0.55, 0.6, 0.72, 0.92, 1.28, 1.22, 0.95, 0.9,
        1.05, 1.32, 1.42, 1.1, 0.75, 0.5, 0.3, 0.15,
    ];
    const WEEKEND: [f64; 24] = [
        0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.8, 1.1, 1.3, 1.3, 1.4, 1.48, 1.5,
        1.4, 1.2, 0.9, 0.6, 0.4, 0.25, 0.15,
    ];
    if weekend { WEEKEND[hour as usize] } else { WEEKDAY[hour as usize] }
}

pub fn weekday_factor(w: Weekday) -> f64 {
    match w {
        Weekday::Mon => 0.78,
        Weekday::Tue => 0.84,
        Weekday::Wed => 1.0,
        Weekday::Thu => 0.9,
        Weekday::Fri => 1.06,
        Weekday::Sat => 1.48,
        Weekday::Sun => 1.12,
    }
}

/// Seasonality by month (January = index 0) before special days.
pub const MONTH_FACTOR: [f64; 12] = [0.93, 0.84, 0.93, 0.98, 0.99, 0.98, 1.04, 0.9, 0.94, 0.99, 1.04, 1.3];

/// Western Easter Sunday (anonymous Gregorian algorithm).
pub fn easter(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    NaiveDate::from_ymd_opt(year, month as u32, day as u32).expect("valid easter")
}

/// Public holidays on which non-airport stores close.
pub fn is_public_holiday(d: NaiveDate, country: Country) -> bool {
    let (m, day) = (d.month(), d.day());
    let common = matches!((m, day), (1, 1) | (5, 1) | (12, 25));
    if common {
        return true;
    }
    let easter_monday = easter(d.year()) + chrono::Duration::days(1);
    match country {
        Country::France => {
            d == easter_monday || matches!((m, day), (5, 8) | (7, 14) | (8, 15) | (11, 1) | (11, 11))
        }
        Country::Belgium => {
            d == easter_monday || matches!((m, day), (7, 21) | (8, 15) | (11, 1) | (11, 11) | (12, 26))
        }
        Country::Spain => {
            d == easter(d.year()) - chrono::Duration::days(2)
                || matches!((m, day), (1, 6) | (8, 15) | (10, 12) | (11, 1) | (12, 6) | (12, 8))
        }
    }
}

/// Black Friday: the day after the fourth Thursday of November.
pub fn black_friday(year: i32) -> NaiveDate {
    let nov1 = NaiveDate::from_ymd_opt(year, 11, 1).expect("valid date");
    let offset = (7 + Weekday::Thu.num_days_from_monday() as i64
        - nov1.weekday().num_days_from_monday() as i64)
        % 7;
    nov1 + chrono::Duration::days(offset + 21 + 1)
}

/// The seasonal sales periods (winter from the second Wednesday of January, summer from the
/// last Wednesday of June, four weeks each).
pub fn in_sales(d: NaiveDate) -> bool {
    let y = d.year();
    let jan_start = nth_weekday(y, 1, Weekday::Wed, 2);
    let jun_start = last_weekday(y, 6, Weekday::Wed);
    let four_weeks = chrono::Duration::days(28);
    (d >= jan_start && d < jan_start + four_weeks) || (d >= jun_start && d < jun_start + four_weeks)
}

fn nth_weekday(year: i32, month: u32, w: Weekday, n: u32) -> NaiveDate {
    NaiveDate::from_weekday_of_month_opt(year, month, w, n as u8).expect("valid nth weekday")
}

fn last_weekday(year: i32, month: u32, w: Weekday) -> NaiveDate {
    let mut d = NaiveDate::from_ymd_opt(year, month + 1, 1).expect("valid") - chrono::Duration::days(1);
    while d.weekday() != w {
        d -= chrono::Duration::days(1);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_facts() {
        assert_eq!(easter(2024), NaiveDate::from_ymd_opt(2024, 3, 31).unwrap());
        assert_eq!(easter(2025), NaiveDate::from_ymd_opt(2025, 4, 20).unwrap());
        assert_eq!(black_friday(2024), NaiveDate::from_ymd_opt(2024, 11, 29).unwrap());
        assert_eq!(black_friday(2025), NaiveDate::from_ymd_opt(2025, 11, 28).unwrap());
        assert!(is_public_holiday(NaiveDate::from_ymd_opt(2024, 7, 14).unwrap(), Country::France));
        assert!(!is_public_holiday(NaiveDate::from_ymd_opt(2024, 7, 14).unwrap(), Country::Spain));
    }
}
