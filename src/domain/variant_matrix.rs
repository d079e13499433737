//! The option matrix of a product (size × colour × ...) and the rule that every
//! variant picks exactly one value of every option, with no two variants alike.

use std::collections::{BTreeMap, HashSet};

use super::validation::{FieldErrors, Invalid, required_text};

pub const MAX_OPTIONS: usize = 3;
pub const MAX_VALUES_PER_OPTION: usize = 100;
pub const MAX_VARIANTS: usize = 250;

/// One axis of the matrix, e.g. `size: [S, M, L]`. Names and values are unique.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProductOption {
    pub name: String,
    pub values: Vec<String>,
}

/// A variant's position in the matrix: option name → chosen value, ordered by name
/// so two equal selections compare and serialise equal.
pub type Selection = BTreeMap<String, String>;

/// Checks the declared options. Errors are reported under `options[i]...`.
pub fn parse_options(raw: &[ProductOption], errors: &mut FieldErrors) -> Vec<ProductOption> {
    if raw.len() > MAX_OPTIONS {
        errors.push("options", "too_many", format!("at most {MAX_OPTIONS} options"));
    }
    let mut names = HashSet::new();
    let mut parsed = Vec::with_capacity(raw.len());
    for (i, option) in raw.iter().enumerate() {
        let name = errors.check(format!("options[{i}].name"), required_text(&option.name, 40));
        if let Some(name) = &name
            && !names.insert(name.to_lowercase())
        {
            errors.push(format!("options[{i}].name"), "duplicate", "option names must be unique");
        }
        if option.values.is_empty() {
            errors.push(format!("options[{i}].values"), "required", "an option needs at least one value");
        }
        if option.values.len() > MAX_VALUES_PER_OPTION {
            errors.push(format!("options[{i}].values"), "too_many", format!("at most {MAX_VALUES_PER_OPTION} values"));
        }
        let mut seen = HashSet::new();
        let mut values = Vec::with_capacity(option.values.len());
        for (j, value) in option.values.iter().enumerate() {
            if let Some(v) = errors.check(format!("options[{i}].values[{j}]"), required_text(value, 60)) {
                if !seen.insert(v.to_lowercase()) {
                    errors.push(format!("options[{i}].values[{j}]"), "duplicate", "option values must be unique");
                }
                values.push(v);
            }
        }
        if let Some(name) = name {
            parsed.push(ProductOption { name, values });
        }
    }
    parsed
}

/// Every combination of the options, in declaration order (the first option varies slowest).
/// A product without options has exactly one, empty, combination.
pub fn combinations(options: &[ProductOption]) -> Vec<Selection> {
    options.iter().fold(vec![Selection::new()], |acc, option| {
        acc.iter()
            .flat_map(|partial| {
                option.values.iter().map(move |value| {
                    let mut next = partial.clone();
                    next.insert(option.name.clone(), value.clone());
                    next
                })
            })
            .collect()
    })
}

/// Checks that `selection` picks exactly one declared value of every option.
pub fn check_selection(options: &[ProductOption], selection: &Selection) -> Result<(), Invalid> {
    for (name, value) in selection {
        let Some(option) = options.iter().find(|o| &o.name == name) else {
            return Err(Invalid::new("unknown_option", format!("the product has no option `{name}`")));
        };
        if !option.values.contains(value) {
            return Err(Invalid::new("unknown_option_value", format!("`{value}` is not a value of option `{name}`")));
        }
    }
    if let Some(missing) = options.iter().find(|o| !selection.contains_key(&o.name)) {
        return Err(Invalid::new("missing_option", format!("a value for option `{}` is required", missing.name)));
    }
    Ok(())
}

/// Checks a whole set of variant selections: each valid, none repeated.
/// Errors are reported under `variants[i].options`.
pub fn check_variants(options: &[ProductOption], selections: &[Selection], errors: &mut FieldErrors) {
    if selections.is_empty() {
        errors.push("variants", "required", "a product needs at least one variant");
    }
    if selections.len() > MAX_VARIANTS {
        errors.push("variants", "too_many", format!("at most {MAX_VARIANTS} variants"));
    }
    let mut seen = HashSet::new();
    for (i, selection) in selections.iter().enumerate() {
        let field = format!("variants[{i}].options");
        if errors.check(field.clone(), check_selection(options, selection)).is_some() && !seen.insert(selection) {
            errors.push(field, "duplicate", "another variant already has these option values");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opt(name: &str, values: &[&str]) -> ProductOption {
        ProductOption { name: name.into(), values: values.iter().map(|v| v.to_string()).collect() }
    }

    fn sel(pairs: &[(&str, &str)]) -> Selection {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn size_by_colour_has_every_pair() {
        let options = [opt("size", &["S", "M"]), opt("colour", &["red", "blue", "green"])];
        let all = combinations(&options);
        assert_eq!(all.len(), 6);
        assert_eq!(all[0], sel(&[("size", "S"), ("colour", "red")]));
        assert_eq!(all[5], sel(&[("size", "M"), ("colour", "green")]));
    }

    #[test]
    fn no_options_means_one_plain_variant() {
        assert_eq!(combinations(&[]), vec![Selection::new()]);
    }

    #[test]
    fn selections_must_match_the_matrix() {
        let options = [opt("size", &["S", "M"])];
        assert!(check_selection(&options, &sel(&[("size", "S")])).is_ok());
        assert_eq!(check_selection(&options, &sel(&[("size", "XL")])).unwrap_err().code, "unknown_option_value");
        assert_eq!(check_selection(&options, &sel(&[("fit", "slim")])).unwrap_err().code, "unknown_option");
        assert_eq!(check_selection(&options, &sel(&[])).unwrap_err().code, "missing_option");
    }

    #[test]
    fn duplicate_variants_and_option_values_are_named() {
        let mut errors = FieldErrors::new();
        let options = parse_options(&[opt("size", &["S", "s"]), opt("Size", &["M"])], &mut errors);
        let fields: Vec<_> = errors.into_vec().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["options[0].values[1]", "options[1].name"]);
        assert_eq!(options.len(), 2);

        let mut errors = FieldErrors::new();
        let options = [opt("size", &["S"])];
        check_variants(&options, &[sel(&[("size", "S")]), sel(&[("size", "S")])], &mut errors);
        assert_eq!(errors.into_vec()[0].field, "variants[1].options");
    }

    fn matrix() -> impl Strategy<Value = Vec<ProductOption>> {
        proptest::collection::vec(proptest::collection::hash_set("[a-z]{1,6}", 1..5), 0..=MAX_OPTIONS).prop_map(|axes| {
            axes.into_iter()
                .enumerate()
                .map(|(i, values)| ProductOption { name: format!("opt{i}"), values: values.into_iter().collect() })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn combinations_are_the_full_product_and_all_valid(options in matrix()) {
            let all = combinations(&options);
            let expected: usize = options.iter().map(|o| o.values.len()).product();
            prop_assert_eq!(all.len(), expected);
            let unique: HashSet<_> = all.iter().collect();
            prop_assert_eq!(unique.len(), all.len());
            for s in &all {
                prop_assert!(check_selection(&options, s).is_ok());
            }
            let mut errors = FieldErrors::new();
            check_variants(&options, &all, &mut errors);
            prop_assert!(errors.is_empty());
        }

        #[test]
        fn repeating_any_combination_is_caught(options in matrix(), pick in any::<proptest::sample::Index>()) {
            let mut all = combinations(&options);
            let dup = all[pick.index(all.len())].clone();
            all.push(dup);
            let mut errors = FieldErrors::new();
            check_variants(&options, &all, &mut errors);
            prop_assert!(errors.into_vec().iter().any(|e| e.code == "duplicate"));
        }
    }
}
