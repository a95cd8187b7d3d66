//! `field_delta!`: the typed delta of a kind whose differences are whole spec fields,
//! one `bool` per field, named in the API's words for Events and conditions.

/// Declares a struct with one `bool` per spec field that can differ, and its
/// `tether_api::external::Delta`: empty when no field is set, described by the API
/// names of the fields that are, in declaration order.
macro_rules! field_delta {
    (
        $(#[$doc:meta])*
        $name:ident { $($(#[$field_doc:meta])* $field:ident => $api_name:literal),+ $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$field_doc])* pub $field: bool,)+
        }

        impl tether_api::external::Delta for $name {
            fn is_empty(&self) -> bool {
                !($(self.$field)||+)
            }

            fn describe(&self) -> Vec<String> {
                let mut fields = Vec::new();
                $(
                    if self.$field {
                        fields.push($api_name.to_owned());
                    }
                )+
                fields
            }
        }
    };
}

pub(crate) use field_delta;

#[cfg(test)]
mod tests {
    use tether_api::external::Delta;

    field_delta! {
        /// A delta for the test.
        Example {
            /// The first field.
            first => "firstField",
            /// The second field.
            second => "secondField",
        }
    }

    #[test]
    fn a_field_delta_names_the_fields_that_differ_in_order() {
        assert!(Example::default().is_empty());
        let both = Example {
            first: true,
            second: true,
        };
        assert!(!both.is_empty());
        assert_eq!(both.describe(), ["firstField", "secondField"]);
        let second = Example {
            second: true,
            ..Example::default()
        };
        assert_eq!(second.describe(), ["secondField"]);
    }
}
