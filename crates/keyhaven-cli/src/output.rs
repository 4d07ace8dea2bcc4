//! Aligned tables, as avn prints them.

use serde_json::Value;

/// Prints `rows` under `columns` (keys of the JSON objects), aligned, with a `=` rule.
pub fn table(columns: &[&str], rows: &[Value]) {
    print!("{}", render(columns, rows));
}

pub fn render(columns: &[&str], rows: &[Value]) -> String {
    let cell = |row: &Value, col: &str| match &row[col] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(r, c)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<String>| {
        let parts: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    let mut out = line(columns.iter().map(|c| c.to_uppercase()).collect());
    out += &line(widths.iter().map(|w| "=".repeat(*w)).collect());
    for r in cells {
        out += &line(r);
    }
    out
}

pub fn json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn columns_align() {
        let out = super::render(
            &["service_name", "state"],
            &[
                json!({"service_name": "a", "state": "RUNNING"}),
                json!({"service_name": "long-name", "state": null}),
            ],
        );
        assert_eq!(
            out,
            "SERVICE_NAME  STATE\n============  =======\na             RUNNING\nlong-name\n"
        );
    }
}
