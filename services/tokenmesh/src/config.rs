//! The config file, `--config tokenmesh.toml`: its keys are the command's long
//! flags, and it sits under the environment and the command line (flags > env >
//! file > defaults). clap stays the one definition of every setting — its flag,
//! variable, default and parser — so the file is merged into clap's parse rather
//! than read into a second, parallel configuration struct.

use std::{
    collections::BTreeSet,
    ffi::OsString,
    io::{self, Read, Write},
    path::{Path, PathBuf},
};

use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches, parser::ValueSource};

use crate::cli::Cli;

/// The largest config file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Why the command line and config file do not make a command.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The command line itself is wrong (or asks for help): clap's own message.
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// The file cannot be read.
    #[error("reading the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not TOML.
    #[error("the config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A key the command has no flag for.
    #[error(
        "the config file {path} has an unknown key `{key}`: `tokenmesh {command}` has no --{key} option"
    )]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The command it was read for, e.g. `serve auth`.
        command: String,
    },
    /// A value that is not a string, number, boolean or list of them.
    #[error("the config file {path}: key `{key}` must be a string, number, boolean or list")]
    Value {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// `config print` of a command that is not one.
    #[error("`tokenmesh config print` shows the configuration of another command, e.g. `up`")]
    NothingToPrint,
}

/// The command line `args`, with the config file (`--config` or
/// `TOKENMESH_CONFIG`) filling in what neither the flags nor the environment set.
pub fn parse<I, T>(args: I) -> Result<Cli, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let layered = layered(args)?;
    Ok(Cli::from_arg_matches(&layered.matches)?)
}

/// A parse with the file merged in, and which settings came from the file.
struct Layered {
    matches: ArgMatches,
    from_file: BTreeSet<String>,
}

fn layered<I, T>(args: I) -> Result<Layered, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = Cli::command();
    command.build();
    // Which command runs and what is set outside the file are read from the
    // arguments and the environment, not from a first parse: that parse would
    // fail on what only the file supplies (`serve`'s required `--listen`).
    let (name, leaf) = named_leaf(&command, &args);
    let path = match config_path(&args) {
        // `config print` applies the file to the command it shows.
        Some(path) if !name.is_empty() && !name.starts_with("config") => path,
        _ => {
            return Ok(Layered {
                matches: command.try_get_matches_from(&args)?,
                from_file: BTreeSet::new(),
            });
        }
    };
    let table = read(&path)?;
    let mut from_file = BTreeSet::new();
    for (key, value) in &table {
        let arg = leaf
            .get_arguments()
            .find(|arg| arg.get_long() == Some(key.as_str()) && !is_meta(arg.get_id().as_str()))
            .ok_or_else(|| ConfigError::UnknownKey {
                path: path.clone(),
                key: key.clone(),
                command: name.clone(),
            })?;
        let id = arg.get_id().as_str();
        // Flags and the environment win over the file.
        if given_outside_file(arg, &args) {
            continue;
        }
        let text = text(value).ok_or_else(|| ConfigError::Value {
            path: path.clone(),
            key: key.clone(),
        })?;
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            if text == "true" {
                args.push(format!("--{key}").into());
            }
        } else {
            // `--key=value`: a value may start with `-` (a generated secret).
            args.push(format!("--{key}={text}").into());
        }
        from_file.insert(id.to_owned());
    }
    let matches = command.try_get_matches_from(&args)?;
    Ok(Layered { matches, from_file })
}

/// The config file named by `--config` or `TOKENMESH_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut tokens = args.iter().skip(1);
    while let Some(token) = tokens.next() {
        let token = token.to_string_lossy();
        if token == "--config" {
            return tokens.next().map(PathBuf::from);
        }
        if let Some(path) = token.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_VARIABLE)
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}

/// The variable that names the config file.
const CONFIG_VARIABLE: &str = "TOKENMESH_CONFIG";

/// The subcommand `args` run (`serve auth`) and its definition: each word that
/// names a subcommand of the one before.
fn named_leaf<'a>(
    mut command: &'a clap::Command,
    args: &[OsString],
) -> (String, &'a clap::Command) {
    let mut path = Vec::new();
    for token in args.iter().skip(1) {
        let token = token.to_string_lossy();
        if token.starts_with('-') {
            continue;
        }
        if let Some(next) = command.find_subcommand(token.as_ref()) {
            path.push(next.get_name().to_owned());
            command = next;
        }
        if !command.has_subcommands() {
            break;
        }
    }
    (path.join(" "), command)
}

/// Whether `arg` is given on the command line or in its variable.
fn given_outside_file(arg: &clap::Arg, args: &[OsString]) -> bool {
    let on_command_line = args.iter().skip(1).any(|token| {
        let token = token.to_string_lossy();
        let long = arg.get_long().is_some_and(|long| {
            token
                .strip_prefix("--")
                .and_then(|rest| rest.strip_prefix(long))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
        });
        let short = arg
            .get_short()
            .is_some_and(|short| token == format!("-{short}"));
        long || short
    });
    let in_environment = arg
        .get_env()
        .and_then(std::env::var_os)
        .is_some_and(|value| !value.is_empty());
    on_command_line || in_environment
}

/// Clap's own arguments, never settings.
fn is_meta(id: &str) -> bool {
    matches!(id, "help" | "version" | "config")
}

/// The file's table, or why not.
fn read(path: &Path) -> Result<toml::Table, ConfigError> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES).read_to_string(&mut text))
        .map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
    text.parse::<toml::Table>()
        .map_err(|error| ConfigError::Syntax {
            path: path.to_owned(),
            message: error.message().to_owned(),
        })
}

/// A TOML value as the flag text clap parses; lists comma-separated.
fn text(value: &toml::Value) -> Option<String> {
    Some(match value {
        toml::Value::String(text) => text.clone(),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(x) => x.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(text)
            .collect::<Option<Vec<_>>>()?
            .join(","),
        toml::Value::Datetime(_) | toml::Value::Table(_) => return None,
    })
}

/// The subcommand that runs (`serve auth`), its definition and its matches.
fn leaf<'a>(
    mut command: &'a clap::Command,
    mut matches: &'a ArgMatches,
) -> (String, &'a clap::Command, &'a ArgMatches) {
    let mut path = Vec::new();
    while let Some((name, sub)) = matches.subcommand() {
        let Some(next) = command.find_subcommand(name) else {
            break;
        };
        path.push(name.to_owned());
        command = next;
        matches = sub;
    }
    (path.join(" "), command, matches)
}

/// `tokenmesh config …`.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration of a command — every setting, where it
    /// came from (flag, environment, file, default), secrets redacted — as a
    /// config file: `tokenmesh --config tokenmesh.toml config print serve auth`.
    Print {
        /// The command whose configuration to show, with its flags (default: `up`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

/// Prints the effective configuration of `command` (with the config file
/// `config`, if any) to `out`.
pub fn print(
    config: Option<&Path>,
    command: &[String],
    out: &mut impl Write,
) -> Result<(), ConfigError> {
    let mut args: Vec<OsString> = vec!["tokenmesh".into()];
    if let Some(config) = config {
        args.push("--config".into());
        args.push(config.into());
    }
    if command.is_empty() {
        args.push("up".into());
    } else {
        args.extend(command.iter().map(OsString::from));
    }
    let layered = layered(args)?;
    let mut definition = Cli::command();
    definition.build();
    let (name, leaf, matches) = leaf(&definition, &layered.matches);
    if name.is_empty() || name.starts_with("config") {
        return Err(ConfigError::NothingToPrint);
    }
    let write = |out: &mut dyn Write| -> io::Result<()> {
        writeln!(out, "# tokenmesh {name}: effective configuration")?;
        for arg in leaf.get_arguments() {
            let id = arg.get_id().as_str();
            let Some(long) = arg.get_long().filter(|_| !is_meta(id)) else {
                continue;
            };
            let source = if layered.from_file.contains(id) {
                "file"
            } else {
                match matches.value_source(id) {
                    Some(ValueSource::CommandLine) => "flag",
                    Some(ValueSource::EnvVariable) => "environment",
                    Some(ValueSource::DefaultValue) => "default",
                    _ => {
                        writeln!(out, "# {long} is not set")?;
                        continue;
                    }
                }
            };
            let raw: Vec<String> = matches
                .get_raw(id)
                .into_iter()
                .flatten()
                .map(|value| value.to_string_lossy().into_owned())
                .collect();
            let value = redacted(arg, &raw.join(","));
            if matches!(arg.get_action(), ArgAction::SetTrue) {
                writeln!(out, "{long} = {value}  # {source}")?;
            } else {
                writeln!(out, "{long} = {}  # {source}", toml_string(&value))?;
            }
        }
        Ok(())
    };
    write(out).map_err(|source| ConfigError::Read {
        path: PathBuf::from("<stdout>"),
        source,
    })
}

/// The value shown for `arg`: secrets (client secrets, a key-encryption key
/// given as text) as `<redacted>`, a database URL without
/// its password.
fn redacted(arg: &clap::Arg, value: &str) -> String {
    let long = arg.get_long().unwrap_or_default();
    // Every secret flag hides its variable's value from `--help` too.
    let secret = arg.is_hide_env_values_set() || long.contains("secret");
    if secret {
        return "<redacted>".to_owned();
    }
    if long.ends_with("database-url") {
        return without_password(value);
    }
    value.to_owned()
}

/// `scheme://user:password@host/…` as `scheme://user:<redacted>@host/…`, and a
/// `password=` query parameter redacted too.
fn without_password(url: &str) -> String {
    let mut shown = url.to_owned();
    if let Some(scheme_end) = shown.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = shown[authority_start..]
            .find(['/', '?'])
            .map_or(shown.len(), |i| authority_start + i);
        if let Some(at) = shown[authority_start..authority_end].rfind('@') {
            let userinfo = &shown[authority_start..authority_start + at];
            if let Some(colon) = userinfo.find(':') {
                shown.replace_range(
                    authority_start + colon + 1..authority_start + at,
                    "<redacted>",
                );
            }
        }
    }
    if let Some(query) = shown.find('?') {
        let (base, params) = shown.split_at(query + 1);
        let params: Vec<String> = params
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                    format!("{name}=<redacted>")
                }
                _ => param.to_owned(),
            })
            .collect();
        shown = format!("{base}{}", params.join("&"));
    }
    shown
}

/// `value` as a TOML basic string.
fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_passwords_are_redacted() {
        assert_eq!(
            without_password("postgres://tokenmesh:s3cret@db:5432/mesh?sslmode=require"),
            "postgres://tokenmesh:<redacted>@db:5432/mesh?sslmode=require"
        );
        assert_eq!(
            without_password("postgres://db/mesh?user=a&password=s3cret"),
            "postgres://db/mesh?user=a&password=<redacted>"
        );
        assert_eq!(
            without_password("postgres://tokenmesh@db/mesh"),
            "postgres://tokenmesh@db/mesh"
        );
        assert_eq!(without_password("sqlite://x.db"), "sqlite://x.db");
    }
}
