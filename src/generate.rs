//! `credrot generate`: add a service to services.toml (keeping its comments and layout) and
//! print the Terraform/OpenTofu that creates its IAM user with least-privilege S3 access.

use crate::config::{Config, ConfigError};
use std::fmt::Write as _;
use std::path::Path;
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table};

/// The store a generated service starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// A local JSON file.
    File,
    /// A 1Password item.
    #[value(name = "1password")]
    OnePassword,
    /// An AWS Secrets Manager secret.
    SecretsManager,
    /// Two SSM parameters.
    Ssm,
}

/// Everything a new service needs.
#[derive(Debug, Clone)]
pub struct NewService {
    /// The service name (`[services.NAME]`).
    pub name: String,
    /// Its IAM user.
    pub iam_user: String,
    /// One line on what the key is for.
    pub description: String,
    /// The S3 bucket the user may use.
    pub bucket: String,
    /// Tags.
    pub tags: Vec<String>,
    /// `max_age`.
    pub max_age: String,
    /// The store kind.
    pub store: StoreKind,
    /// Where in the store: vault (1password), path (file), secret name, or SSM prefix.
    pub location: String,
}

/// Why the service could not be added.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The name is taken.
    #[error("service '{0}' already exists in {1}; choose another --name or edit the file")]
    Exists(String, String),
    /// The current file is not valid TOML.
    #[error("{0} is not valid TOML ({1}); fix it first")]
    Unparsable(String, String),
    /// The result would not be a valid configuration.
    #[error("the new service would make the configuration invalid: {0}")]
    Invalid(#[from] ConfigError),
    /// A name that cannot become a Terraform identifier or an S3 bucket.
    #[error("{0}")]
    BadValue(String),
}

/// The default store location for `kind`.
pub fn default_location(kind: StoreKind, name: &str) -> String {
    match kind {
        StoreKind::File => "secrets/{service}.json".to_string(),
        StoreKind::OnePassword => "Automation".to_string(),
        StoreKind::SecretsManager => format!("credrot/{name}/aws"),
        StoreKind::Ssm => format!("/credrot/{name}"),
    }
}

/// Check a bucket name the way S3 does (3-63 of a-z 0-9 . -, starting and ending alphanumeric).
pub fn check_bucket(bucket: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!("'{bucket}' is not a valid S3 bucket name: use 3-63 lowercase letters, digits, '.' or '-'"))
    }
}

/// Check a service name: it becomes a TOML key, a Terraform name and output names.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("'{name}' is not a usable service name: start with a lowercase letter, then lowercase letters, digits, '-' or '_'"))
    }
}

fn store_table(service: &NewService) -> Table {
    let mut store = Table::new();
    match service.store {
        StoreKind::File => {
            store["kind"] = value("file");
            store["path"] = value(&service.location);
            store["format"] = value("json");
        }
        StoreKind::OnePassword => {
            store["kind"] = value("1password");
            store["vault"] = value(&service.location);
        }
        StoreKind::SecretsManager => {
            store["kind"] = value("secrets-manager");
            store["name"] = value(&service.location);
        }
        StoreKind::Ssm => {
            store["kind"] = value("ssm");
            store["prefix"] = value(&service.location);
        }
    }
    store
}

/// `existing` (the file's text, empty if it does not exist) with `service` appended,
/// validated as a credrot configuration read from `path`.
pub fn add_service(
    existing: &str,
    path: &Path,
    service: &NewService,
) -> Result<String, GenerateError> {
    check_name(&service.name).map_err(GenerateError::BadValue)?;
    check_bucket(&service.bucket).map_err(GenerateError::BadValue)?;
    let current: DocumentMut = existing.parse().map_err(|e: toml_edit::TomlError| {
        GenerateError::Unparsable(path.display().to_string(), e.message().to_string())
    })?;
    if current
        .get("services")
        .and_then(|s| s.get(&service.name))
        .is_some()
    {
        return Err(GenerateError::Exists(
            service.name.clone(),
            path.display().to_string(),
        ));
    }
    // The new section is rendered by toml_edit (quoting, arrays) and appended, so every byte
    // of the existing file, comments and layout included, stays as it was.
    let mut table = Table::new();
    table.decor_mut().set_prefix(format!(
        "# Added by `credrot generate`: S3 bucket {}.\n",
        service.bucket
    ));
    table["description"] = value(&service.description);
    table["iam_user"] = value(&service.iam_user);
    table["tags"] = value(service.tags.iter().collect::<Array>());
    table["max_age"] = value(&service.max_age);
    let mut stores = ArrayOfTables::new();
    stores.push(store_table(service));
    table.insert("stores", Item::ArrayOfTables(stores));
    let mut services = Table::new();
    services.set_implicit(true);
    services.insert(&service.name, Item::Table(table));
    let mut section = DocumentMut::new();
    section.insert("services", Item::Table(services));
    let separator = match existing {
        "" => "",
        e if e.ends_with("\n\n") => "",
        e if e.ends_with('\n') => "\n",
        _ => "\n\n",
    };
    let text = format!("{existing}{separator}{section}");
    Config::parse(&text, path)?;
    Ok(text)
}

/// The Terraform/OpenTofu for the service's IAM user and its S3 policy. The user's keys are
/// credrot's, so no `aws_iam_access_key` (nor `time_rotating`) is emitted: Terraform and
/// credrot would both make keys for the same user.
pub fn terraform_snippet(service: &NewService) -> String {
    let id = service.name.replace('-', "_");
    let NewService {
        iam_user,
        bucket,
        name,
        ..
    } = service;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"# IAM user for {name}, generated by `credrot generate`.
resource "aws_iam_user" "{id}" {{
  name = "{iam_user}"
  tags = {{
    managed-by = "credrot"
  }}
}}

# Least privilege: list the bucket, read and write its objects, nothing else.
data "aws_iam_policy_document" "{id}_s3" {{
  statement {{
    sid       = "ListBucket"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = ["arn:aws:s3:::{bucket}"]
  }}
  statement {{
    sid       = "ReadWriteObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["arn:aws:s3:::{bucket}/*"]
  }}
}}

resource "aws_iam_policy" "{id}_s3" {{
  name   = "{iam_user}-s3"
  policy = data.aws_iam_policy_document.{id}_s3.json
}}

resource "aws_iam_user_policy_attachment" "{id}_s3" {{
  user       = aws_iam_user.{id}.name
  policy_arn = aws_iam_policy.{id}_s3.arn
}}

# No aws_iam_access_key here: credrot makes this user's keys (credrot update {name}).
# A Terraform-made key next to them would be a third party rotating the same user.
"#
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis() -> NewService {
        NewService {
            name: "redis".into(),
            iam_user: "redis-backup".into(),
            description: "Redis backups".into(),
            bucket: "redis-backup-home-ops".into(),
            tags: vec!["aws".into(), "redis".into()],
            max_age: "30d".into(),
            store: StoreKind::OnePassword,
            location: "Automation".into(),
        }
    }

    const EXISTING: &str = "# my services\n[defaults]\nregion = \"us-west-2\" # keep me\n\n[services.pg]\niam_user = \"pg\" # and me\n";

    #[test]
    fn appends_and_keeps_comments_and_layout() {
        let text = add_service(EXISTING, Path::new("services.toml"), &redis()).unwrap();
        assert!(text.starts_with(EXISTING), "{text}");
        assert!(
            text.contains("[services.redis]") && text.contains("[[services.redis.stores]]"),
            "{text}"
        );
        let config = Config::parse(&text, Path::new("services.toml")).unwrap();
        assert_eq!(config.service("redis").unwrap().iam_user, "redis-backup");
    }

    #[test]
    fn refuses_an_existing_name_and_bad_values() {
        let mut pg = redis();
        pg.name = "pg".into();
        assert!(matches!(
            add_service(EXISTING, Path::new("s.toml"), &pg),
            Err(GenerateError::Exists(..))
        ));
        let mut bad = redis();
        bad.bucket = "Not_A_Bucket".into();
        assert!(matches!(
            add_service(EXISTING, Path::new("s.toml"), &bad),
            Err(GenerateError::BadValue(_))
        ));
        let mut user = redis();
        user.iam_user = "has space".into();
        assert!(matches!(
            add_service(EXISTING, Path::new("s.toml"), &user),
            Err(GenerateError::Invalid(_))
        ));
    }

    #[test]
    fn the_snippet_makes_the_user_and_policy_and_no_key() {
        let hcl = terraform_snippet(&redis());
        assert!(hcl.contains("resource \"aws_iam_user\" \"redis\""));
        assert!(hcl.contains("arn:aws:s3:::redis-backup-home-ops/*"));
        assert!(!hcl.contains("resource \"aws_iam_access_key\""), "{hcl}");
        assert!(!hcl.contains("time_rotating"), "{hcl}");
        assert!(!hcl.contains("output "), "{hcl}");
    }
}
