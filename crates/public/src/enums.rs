//! Text enums: a closed set of values stored and sent as lowercase text (roles, statuses, audit
//! actions, permissions). Every one is made by [`text_enum!`](crate::text_enum), so parsing,
//! printing, serde and SQL agree on the spelling in one place.

/// Defines a fieldless enum whose variants are spelled as the given strings, with `ALL` (every
/// variant, in order), `as_str`, `parse` (→ [`NameError`](crate::NameError) "must be one of …"),
/// `Display`, `FromStr`, serde as the string, and `ToSql`/`FromSql` as `text`.
///
/// ```
/// tenantry_public::text_enum! {
///     /// How urgent something is.
///     pub enum Urgency { Low = "low", High = "high" }
/// }
/// assert_eq!(Urgency::parse("high"), Ok(Urgency::High));
/// assert_eq!(Urgency::High.to_string(), "high");
/// assert_eq!(Urgency::ALL, &[Urgency::Low, Urgency::High]);
/// assert_eq!(Urgency::parse("x").unwrap_err().0, "must be one of low, high");
/// ```
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(#[$first_meta:meta])* $first:ident = $first_text:literal
            $(, $(#[$variant_meta:meta])* $variant:ident = $text:literal)* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $(#[$first_meta])* $first,
            $($(#[$variant_meta])* $variant,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[Self::$first, $(Self::$variant,)*];

            /// What a wrong value is told: the accepted spellings.
            pub const EXPECTED: &'static str =
                concat!("must be one of ", $first_text $(, ", ", $text)*);

            /// The stored and serialised spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    Self::$first => $first_text,
                    $(Self::$variant => $text,)*
                }
            }

            /// The value spelled `input` (exactly; no case folding or trimming).
            pub fn parse(input: &str) -> ::std::result::Result<Self, $crate::NameError> {
                match input {
                    $first_text => Ok(Self::$first),
                    $($text => Ok(Self::$variant),)*
                    _ => Err($crate::NameError(Self::EXPECTED)),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::NameError;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl $crate::macro_support::serde::Serialize for $name {
            fn serialize<S: $crate::macro_support::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> $crate::macro_support::serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::macro_support::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str> as $crate::macro_support::serde::Deserialize>::deserialize(deserializer)?;
                Self::parse(&text).map_err(<D::Error as $crate::macro_support::serde::de::Error>::custom)
            }
        }

        $crate::__sql_via!($name, &str, |value| value.as_str(), |text| {
            Self::parse(text).map_err(|e| format!("{} {text:?} {e}", stringify!($name)).into())
        });
    };
}

#[cfg(test)]
mod tests {
    text_enum! {
        /// A test enum.
        enum Colour {
            /// The first.
            Red = "red",
            Green = "green",
            Blue = "light_blue",
        }
    }

    #[test]
    fn spellings_round_trip_everywhere() {
        for c in Colour::ALL {
            assert_eq!(Colour::parse(c.as_str()), Ok(*c));
            assert_eq!(c.to_string(), c.as_str());
            let json = serde_json::to_string(c).unwrap_or_default();
            assert_eq!(serde_json::from_str::<Colour>(&json).ok(), Some(*c));
        }
        assert_eq!(Colour::EXPECTED, "must be one of red, green, light_blue");
        assert!(Colour::parse("Red").is_err());
        assert!(serde_json::from_str::<Colour>("\"purple\"").is_err());
    }
}
