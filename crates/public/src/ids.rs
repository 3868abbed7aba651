//! Typed ids, so a company id can never be passed where a user id is expected.
//!
//! Every id of the code base is made by [`typed_id!`](crate::typed_id): the public schema's here,
//! the tenant schema's in `tenantry_tenant::ids`. A typed id serialises as its inner value,
//! binds to and reads from SQL as its inner value, parses from text (path segments) and prints
//! as its inner value.

/// Defines a typed id: a newtype over `Uuid` (the default; new ids are time-ordered v7) or over
/// `i64` (for `bigserial` keys), with serde, SQL (`ToSql`/`FromSql`), `Display` and `FromStr`.
///
/// ```
/// tenantry_public::typed_id!(
///     /// A row of `widgets`.
///     pub WidgetId
/// );
/// tenantry_public::typed_id!(
///     /// A row of `events` (bigserial).
///     pub EventId: i64
/// );
/// let id = WidgetId::new();
/// assert_eq!(id.to_string().parse::<WidgetId>().ok(), Some(id));
/// assert_eq!("42".parse::<EventId>().ok(), Some(EventId(42)));
/// ```
#[macro_export]
macro_rules! typed_id {
    ($(#[$meta:meta])* $vis:vis $name:ident) => {
        $crate::typed_id!(@define $(#[$meta])* $vis $name, $crate::macro_support::uuid::Uuid);

        impl $name {
            /// A new time-ordered id.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self($crate::macro_support::uuid::Uuid::now_v7())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::macro_support::uuid::Error;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                $crate::macro_support::uuid::Uuid::parse_str(s).map(Self)
            }
        }
    };
    ($(#[$meta:meta])* $vis:vis $name:ident: i64) => {
        $crate::typed_id!(@define $(#[$meta])* $vis $name, i64);

        impl ::std::str::FromStr for $name {
            type Err = ::std::num::ParseIntError;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                s.parse::<i64>().map(Self)
            }
        }
    };
    (@define $(#[$meta:meta])* $vis:vis $name:ident, $inner:ty) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis struct $name(pub $inner);

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl ::std::convert::From<$inner> for $name {
            fn from(id: $inner) -> Self {
                Self(id)
            }
        }

        impl $crate::macro_support::serde::Serialize for $name {
            fn serialize<S: $crate::macro_support::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                $crate::macro_support::serde::Serialize::serialize(&self.0, serializer)
            }
        }

        impl<'de> $crate::macro_support::serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::macro_support::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<Self, D::Error> {
                <$inner as $crate::macro_support::serde::Deserialize>::deserialize(deserializer)
                    .map(Self)
            }
        }

        $crate::__sql_via!($name, $inner, |id| id.0, |inner| Ok(Self(inner)));
    };
}

/// `ToSql`/`FromSql` for a newtype through a representation the database already knows:
/// `$to` turns `&self` (named by the first closure's argument) into a value of `$repr`, `$from`
/// turns a `$repr` back into `Self` (or an error for a value the type refuses). Used by
/// [`typed_id!`](crate::typed_id) and [`text_enum!`](crate::text_enum).
#[doc(hidden)]
#[macro_export]
macro_rules! __sql_via {
    ($name:ty, $repr:ty, |$this:ident| $to:expr, |$raw:ident| $from:expr) => {
        impl $crate::macro_support::pg::ToSql for $name {
            fn to_sql(
                &self,
                ty: &$crate::macro_support::pg::Type,
                out: &mut $crate::macro_support::pg::private::BytesMut,
            ) -> ::std::result::Result<
                $crate::macro_support::pg::IsNull,
                $crate::macro_support::BoxError,
            > {
                let $this = self;
                $crate::macro_support::pg::ToSql::to_sql(&$to, ty, out)
            }

            fn accepts(ty: &$crate::macro_support::pg::Type) -> bool {
                <$repr as $crate::macro_support::pg::ToSql>::accepts(ty)
            }

            $crate::macro_support::pg::to_sql_checked!();
        }

        impl<'a> $crate::macro_support::pg::FromSql<'a> for $name {
            fn from_sql(
                ty: &$crate::macro_support::pg::Type,
                raw: &'a [u8],
            ) -> ::std::result::Result<Self, $crate::macro_support::BoxError> {
                let $raw = <$repr as $crate::macro_support::pg::FromSql>::from_sql(ty, raw)?;
                $from
            }

            fn accepts(ty: &$crate::macro_support::pg::Type) -> bool {
                <$repr as $crate::macro_support::pg::FromSql>::accepts(ty)
            }
        }
    };
}

typed_id!(
    /// A row of `public.companies`.
    pub CompanyId
);
typed_id!(
    /// A row of `public.users`.
    pub UserId
);
typed_id!(
    /// A row of `public.memberships`.
    pub MembershipId
);
typed_id!(
    /// A row of `public.sessions` (one login: a family of refresh tokens).
    pub SessionId
);
typed_id!(
    /// A row of `public.outbox` (bigserial).
    pub OutboxId: i64
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_json() {
        let id = UserId::new();
        assert_eq!(id.to_string().parse::<UserId>().ok(), Some(id));
        let json = serde_json::to_string(&id).unwrap_or_default();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<UserId>(&json).ok(), Some(id));
        assert!("not-a-uuid".parse::<UserId>().is_err());
        assert_eq!(
            serde_json::to_string(&OutboxId(7)).ok().as_deref(),
            Some("7")
        );
    }
}
