//! The values' OpenAPI schemas, carrying the limits the types enforce, so that a client
//! generated from a service's description refuses what the service would refuse.
//!
//! Written by hand for the types whose `Deserialize` is hand-written (their schema is what
//! `parse` accepts, which no derive can see); the structs derive theirs in `model`.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::bindings::{CheckPairs, MAX_PAIRS_PER_CHECK, Pair};
use crate::ids::{ProfileId, UserId};
use crate::model::{MAX_NAME_CHARS, MAX_USERS_PER_PROFILE, ProfileUsers, UserName};

/// The canonical hyphenated form, the only one `UserId::parse` accepts (any case).
pub const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// No control character (Unicode `Cc`, what `char::is_control` means) anywhere, and at least
/// one character that is not white space: what `UserName::parse` accepts within its length.
pub const NAME_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$";

fn id_schema(what: &str, example: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .pattern(Some(UUID_PATTERN))
        .description(Some(format!(
            "A {what} id: a UUID in its canonical hyphenated form (answers are lower-case)"
        )))
        .examples([example])
        .into()
}

/// The `id` of a create's body: leave it out, or `null` (what clients that send whole objects
/// do); ids are made by the service.
fn no_id() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Null)
        .description(Some("Leave out, or null: ids are made by the service"))
}

/// A create's body as the document shows it. The same `UserBody` is read for creates and
/// replaces, but a create refuses any id while a replace takes the path's own (as a GET
/// answered it), so the two are described apart.
fn create_body(field: &str, schema: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .property("id", no_id())
        .property(field, utoipa::openapi::Ref::from_schema_name(schema))
        .required(field)
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)))
        .into()
}

/// The body of `POST /users`.
#[derive(Debug)]
pub struct NewUser;

impl PartialSchema for NewUser {
    fn schema() -> RefOr<Schema> {
        create_body("name", "UserName")
    }
}

impl ToSchema for NewUser {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("NewUser")
    }
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((UserName::name().into(), UserName::schema()));
    }
}

/// The body of `POST /profiles`.
#[derive(Debug)]
pub struct NewProfile;

impl PartialSchema for NewProfile {
    fn schema() -> RefOr<Schema> {
        create_body("users", "ProfileUsers")
    }
}

impl ToSchema for NewProfile {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("NewProfile")
    }
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ProfileUsers::name().into(), ProfileUsers::schema()));
        <ProfileUsers as ToSchema>::schemas(schemas);
    }
}

impl PartialSchema for UserId {
    fn schema() -> RefOr<Schema> {
        id_schema("user", "3f2c1a9e-8d4b-4c7a-9f10-2b5e6d7c8a90")
    }
}

impl ToSchema for UserId {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("UserId")
    }
}

impl PartialSchema for ProfileId {
    fn schema() -> RefOr<Schema> {
        id_schema("profile", "9b1d7e52-04c3-4f6e-8a2d-5c7e9f0a1b3c")
    }
}

impl ToSchema for ProfileId {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ProfileId")
    }
}

impl PartialSchema for UserName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_NAME_CHARS))
            .pattern(Some(NAME_PATTERN))
            .description(Some(format!(
                "1 to {MAX_NAME_CHARS} characters (not bytes), not blank, no control characters"
            )))
            .examples(["Ada Lovelace"])
            .into()
    }
}

impl ToSchema for UserName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("UserName")
    }
}

impl PartialSchema for ProfileUsers {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(UserId::schema())
            .max_items(Some(MAX_USERS_PER_PROFILE))
            .description(Some(format!(
                "The profile's users: at most {MAX_USERS_PER_PROFILE} ids as sent (duplicates \
                 count); duplicates collapse, and answers list each user once, in id order"
            )))
            .into()
    }
}

impl ToSchema for ProfileUsers {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ProfileUsers")
    }
}

impl PartialSchema for CheckPairs {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(Pair::name())))
            .max_items(Some(MAX_PAIRS_PER_CHECK))
            .description(Some(format!(
                "The pairs asked about, at most {MAX_PAIRS_PER_CHECK}; the answers come in this order"
            )))
            .into()
    }
}

impl ToSchema for CheckPairs {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("CheckPairs")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Pair::name().into(), Pair::schema()));
        <Pair as ToSchema>::schemas(schemas);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The patterns are what the parsers accept: checked here on the cases that matter, with the
    /// same regex semantics schema validators use for these (classes and `\s`).
    #[test]
    fn schemas_carry_the_limits() {
        let json = |s: RefOr<Schema>| serde_json::to_value(s).unwrap();
        let id = json(UserId::schema());
        assert_eq!(id["format"], "uuid");
        assert_eq!(id["pattern"], UUID_PATTERN);
        let name = json(UserName::schema());
        assert_eq!((name["minLength"].as_u64(), name["maxLength"].as_u64()), (Some(1), Some(256)));
        let users = json(ProfileUsers::schema());
        assert_eq!(users["maxItems"].as_u64(), Some(MAX_USERS_PER_PROFILE as u64));
        assert_eq!(users["items"]["format"], "uuid");
        let pairs = json(CheckPairs::schema());
        assert_eq!(pairs["maxItems"].as_u64(), Some(MAX_PAIRS_PER_CHECK as u64));
    }
}
