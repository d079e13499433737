//! E-mail templates: each is a subject, a plain-text body and an HTML body,
//! compiled into the binary so one file runs anywhere. Rendering is pure: the
//! same template and context always give the same message. A variable the
//! template needs but the context lacks is an error, never an empty string, so a
//! customer cannot receive "Your order  has shipped". Values in the HTML body
//! are HTML-escaped; amounts are minor units shown with the currency's exponent
//! (`{{ amount | money(currency) }}`).

use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use crate::domain::money::Currency;

/// The messages Mercato sends. The name is the file stem under `templates/email/`
/// and the `template` of an `email.send` job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// Context: `{order}` (an order as the API shows it).
    OrderConfirmed,
    /// Context: `{order, shipment: {carrier, tracking_number, tracking_url?, partial?, lines: [{title, sku, quantity}]}}`.
    OrderShipped,
    /// Context: `{order}`.
    OrderDelivered,
    /// Context: `{order, refund: {amount (minor units), currency, partial, reason?}}`.
    OrderRefunded,
    /// Context: `{name, reset_url, expires_at, expires_in_minutes}`.
    PasswordReset,
    /// To staff. Context: `{name, sku, available, threshold}`.
    LowStock,
}

impl Template {
    pub const ALL: [Template; 6] = [
        Template::OrderConfirmed,
        Template::OrderShipped,
        Template::OrderDelivered,
        Template::OrderRefunded,
        Template::PasswordReset,
        Template::LowStock,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Template::OrderConfirmed => "order_confirmed",
            Template::OrderShipped => "order_shipped",
            Template::OrderDelivered => "order_delivered",
            Template::OrderRefunded => "order_refunded",
            Template::PasswordReset => "password_reset",
            Template::LowStock => "low_stock",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// A rendered message, ready to be wrapped in MIME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Debug, thiserror::Error)]
#[error("template {template}: {message}")]
pub struct RenderError {
    pub template: &'static str,
    pub message: String,
}

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(
            (concat!($name, ".subject.txt"), include_str!(concat!("../../templates/email/", $name, ".subject.txt"))),
            (concat!($name, ".txt"), include_str!(concat!("../../templates/email/", $name, ".txt"))),
            (concat!($name, ".html"), include_str!(concat!("../../templates/email/", $name, ".html"))),
        )*]
    };
}

const SOURCES: &[(&str, &str)] =
    embedded!("order_confirmed", "order_shipped", "order_delivered", "order_refunded", "password_reset", "low_stock");

fn environment() -> Result<&'static Environment<'static>, RenderError> {
    static ENV: OnceLock<Result<Environment<'static>, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Printing or iterating a missing value fails; `{% if x %}` on a missing
        // optional value (a tracking URL) is still allowed.
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        // minijinja's default already escapes `.html` templates; said here so a
        // change of file naming cannot silently turn escaping off.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") { minijinja::AutoEscape::Html } else { minijinja::AutoEscape::None }
        });
        env.add_filter("money", money_filter);
        for (name, source) in SOURCES {
            env.add_template(name, source).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(env)
    })
    .as_ref()
    .map_err(|message| RenderError { template: "(all)", message: message.clone() })
}

/// `{{ 1250 | money("EUR") }}` → `12.50 EUR`: integer minor units shown with the
/// currency's exponent, never through a float.
fn money_filter(minor: i64, currency: &str) -> Result<String, minijinja::Error> {
    let currency = Currency::parse(currency)
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, format!("currency: {}", e.message)))?;
    Ok(crate::domain::money::format_amount(minor, currency))
}

/// Renders `template` with `context` (a JSON object).
pub fn render(template: Template, context: &serde_json::Value) -> Result<RenderedEmail, RenderError> {
    let env = environment()?;
    let name = template.as_str();
    let part = |suffix: &str| -> Result<String, RenderError> {
        let file = format!("{name}{suffix}");
        let tmpl = env.get_template(&file).map_err(|e| RenderError { template: name, message: e.to_string() })?;
        tmpl.render(minijinja::Value::from(minijinja::value::Serde(context)))
            .map_err(|e| RenderError { template: name, message: format!("{file}: {}", describe(&e)) })
    };
    let subject = part(".subject.txt")?;
    Ok(RenderedEmail {
        // One line, whatever the template or the data did with whitespace.
        subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
        text: part(".txt")?,
        html: part(".html")?,
    })
}

fn describe(e: &minijinja::Error) -> String {
    let mut message = e.to_string();
    if let Some(detail) = e.detail() {
        message = format!("{message} ({detail})");
    }
    message
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn order() -> serde_json::Value {
        json!({
            "id": "0190f1e2-0000-7000-8000-000000000001",
            "number": "M-TEST1234",
            "currency": "EUR",
            "subtotal": 2500, "shipping_total": 490, "tax_total": 399, "grand_total": 2990,
            "shipping_address": {"name": "Ann <b>Smith</b> & Co", "line1": "Main St 1", "city": "Berlin",
                                 "postal_code": "10115", "country": "DE"},
            "lines": [{"title": "Jar", "sku": "JAR-1", "quantity": 2, "unit_price": 1250, "line_total": 2500}],
        })
    }

    #[test]
    fn every_template_renders_with_its_documented_context() {
        let contexts = [
            (Template::OrderConfirmed, json!({"order": order()})),
            (
                Template::OrderShipped,
                json!({"order": order(), "shipment": {"carrier": "DHL", "tracking_number": "003404",
                    "tracking_url": "https://track.example/003404", "lines": [{"title": "Jar", "sku": "JAR-1", "quantity": 2}]}}),
            ),
            (Template::OrderDelivered, json!({"order": order()})),
            (Template::OrderRefunded, json!({"order": order(), "refund": {"amount": 1250, "currency": "EUR", "partial": true}})),
            (
                Template::PasswordReset,
                json!({"name": "Ann", "reset_url": "https://shop.example/reset-password?token=abc", "expires_at": "2026-01-01T10:00:00Z", "expires_in_minutes": 60}),
            ),
            (Template::LowStock, json!({"name": "Bo", "sku": "JAR-1", "available": 2, "threshold": 5})),
        ];
        for (template, context) in contexts {
            let email = render(template, &context).unwrap_or_else(|e| panic!("{e}"));
            assert!(!email.subject.is_empty() && !email.subject.contains('\n'), "{template:?}: {:?}", email.subject);
            assert!(email.html.contains("<html>"), "{template:?}");
        }
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let email = render(Template::OrderDelivered, &json!({"order": order()})).unwrap();
        assert!(email.html.contains("Ann &lt;b&gt;Smith&lt;&#x2f;b&gt; &amp; Co"), "{}", email.html);
        assert!(!email.html.contains("<b>Smith"));
        assert!(email.text.contains("Ann <b>Smith</b> & Co"), "{}", email.text);
    }

    #[test]
    fn a_missing_variable_is_an_error_not_an_empty_string() {
        let mut incomplete = order();
        incomplete.as_object_mut().unwrap().remove("number");
        let err = render(Template::OrderConfirmed, &json!({"order": incomplete})).unwrap_err();
        assert_eq!(err.template, "order_confirmed");
        assert!(err.message.contains("undefined"), "{}", err.message);
        assert!(render(Template::PasswordReset, &json!({"name": "Ann"})).is_err());
    }

    #[test]
    fn amounts_use_the_currency_exponent() {
        let email = render(Template::OrderConfirmed, &json!({"order": order()})).unwrap();
        assert!(email.text.contains("Total:    29.90 EUR"), "{}", email.text);
        let mut yen = order();
        yen["currency"] = json!("JPY");
        assert!(render(Template::OrderConfirmed, &json!({"order": yen})).unwrap().text.contains("Total:    2990 JPY"));
        let refund = json!({"order": order(), "refund": {"amount": 1500, "currency": "KWD", "partial": false}});
        let email = render(Template::OrderRefunded, &refund).unwrap();
        assert!(email.text.contains("1.500 KWD") && email.subject.starts_with("Your order"), "{}", email.text);
    }

    #[test]
    fn optional_parts_appear_only_when_given() {
        let shipment = |url: serde_json::Value| {
            json!({"order": order(), "shipment": {"carrier": "DHL", "tracking_number": "003404", "tracking_url": url,
                "lines": [{"title": "Jar", "sku": "JAR-1", "quantity": 1}]}})
        };
        let with = render(Template::OrderShipped, &shipment(json!("https://track.example/003404"))).unwrap();
        assert!(with.text.contains("Track it: https://track.example/003404"));
        assert!(with.html.contains(r#"<a href="https:&#x2f;&#x2f;track.example&#x2f;003404">003404</a>"#), "{}", with.html);
        let without = render(Template::OrderShipped, &shipment(serde_json::Value::Null)).unwrap();
        assert!(!without.text.contains("Track it") && without.text.contains("Tracking number: 003404"));
    }

    #[test]
    fn a_bad_currency_is_an_error() {
        let refund = json!({"order": order(), "refund": {"amount": 1, "currency": "euro", "partial": false}});
        assert!(render(Template::OrderRefunded, &refund).is_err());
    }

    #[test]
    fn template_names_round_trip() {
        for t in Template::ALL {
            assert_eq!(Template::parse(t.as_str()), Some(t));
        }
        assert_eq!(Template::parse("nope"), None);
    }
}
