//! Settings declared once. `settings!` takes each setting's doc, type, default, [`Scope`]
//! and [`Flag`], and emits:
//! - the struct, read from and written to TOML (every key optional, unknown keys refused);
//! - its `Default`;
//! - `SETTINGS`, the table of [`Setting`]s, from which the lists of what ranks may differ in
//!   and what a resumed run may change are computed ([`names`]);
//! - an overrides type, the same fields as `Option`s, with `apply`. With the `clap` feature
//!   it is the command's flags: `--name VALUE`, or `--name` and `--no-name` for a switch,
//!   each with its doc as help and its default appended.
//!
//! So a new setting is one entry: its flag, TOML key, default, help and resume rule follow.

/// Who must agree on a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// Decides what the run computes: the same on every rank, and a resumed run keeps it.
    Fixed,
    /// Decides where the run computes, or how long it goes on: the same on every rank, but a
    /// resumed run may change it.
    Shared,
    /// A rank's own resources (threads, memory, how often it saves): ranks may differ, and a
    /// resumed run may change it. It never changes what is computed.
    PerRank,
}

/// How a setting is given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flag {
    /// `--name VALUE`.
    Value,
    /// `--name` and `--no-name` for a `bool`; the last one given wins.
    Switch,
    /// `--name` and `--no-name` for an `Option<bool>` whose default (`None`) is decided
    /// from other settings.
    Tristate,
}

/// One setting as declared.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Its name: the TOML key, and the flag with `-` for `_`.
    pub name: &'static str,
    /// Its doc comment, one line per doc line.
    pub doc: &'static str,
    /// Who must agree on it.
    pub scope: Scope,
    /// How it is given on the command line.
    pub flag: Flag,
    /// The flag's value name (`MINUTES`), where not the name in capitals.
    pub value_name: Option<&'static str>,
    /// The default in words, where it is not one value (`one per core`).
    pub default_words: Option<&'static str>,
    /// The help of a switch's `--no-` form.
    pub negation: Option<&'static str>,
}

impl Setting {
    /// The doc as one paragraph of plain text: lines joined, rustdoc's link brackets
    /// dropped.
    pub fn help(&self) -> String {
        let words: Vec<&str> = self.doc.split_whitespace().collect();
        let mut text = words.join(" ").replace("[`", "`").replace("`]", "`");
        if text.ends_with('.') {
            text.pop();
        }
        text
    }

    /// The optional parts unset: the base of each declared entry.
    pub const BARE: Setting = Setting {
        name: "",
        doc: "",
        scope: Scope::Fixed,
        flag: Flag::Value,
        value_name: None,
        default_words: None,
        negation: None,
    };
}

const fn in_scopes(s: Scope, scopes: &[Scope]) -> bool {
    let mut i = 0;
    while i < scopes.len() {
        if scopes[i] as u8 == s as u8 {
            return true;
        }
        i += 1;
    }
    false
}

/// How many of `all` are in one of `scopes`: the length for [`names`].
pub const fn count(all: &[Setting], scopes: &[Scope]) -> usize {
    let (mut i, mut n) = (0, 0);
    while i < all.len() {
        if in_scopes(all[i].scope, scopes) {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The names of those of `all` in one of `scopes`, in declaration order; `N` is their
/// [`count`]. A `const fn`, so that such lists are constants computed from the declarations.
pub const fn names<const N: usize>(all: &[Setting], scopes: &[Scope]) -> [&'static str; N] {
    let mut out = [""; N];
    let (mut i, mut n) = (0, 0);
    while i < all.len() {
        if in_scopes(all[i].scope, scopes) {
            out[n] = all[i].name;
            n += 1;
        }
        i += 1;
    }
    out
}

/// The setting named `name` of `all` (the macro's own lookup; every name is there).
#[cfg(feature = "clap")]
pub(crate) fn find<'a>(all: &'a [Setting], name: &str) -> &'a Setting {
    all.iter()
        .find(|s| s.name == name)
        .expect("the macro looks up its own names")
}

/// A default as its flag's help shows it: TOML's rendering of the value, or none for an
/// unset option.
#[cfg(feature = "clap")]
pub(crate) fn shown<T: serde::Serialize>(v: &T) -> Option<String> {
    match toml::Value::try_from(v).ok()? {
        toml::Value::String(s) => Some(s),
        toml::Value::Boolean(b) => Some(if b { "on" } else { "off" }.into()),
        v => Some(v.to_string()),
    }
}

/// Adds `s`'s flags to `cmd`: `parser` for a value, the pair of switches otherwise.
#[cfg(feature = "clap")]
pub(crate) fn add_flags(
    cmd: clap::Command,
    s: &Setting,
    parser: Option<clap::builder::ValueParser>,
    default: Option<String>,
) -> clap::Command {
    use clap::{Arg, ArgAction};
    let long = s.name.replace('_', "-");
    let mut help = s.help();
    if let Some(d) = s.default_words.map(String::from).or(default) {
        help = format!("{help} [default: {d}]");
    }
    match (s.flag, parser) {
        (Flag::Value, Some(p)) => cmd.arg(
            Arg::new(s.name)
                .long(long)
                .action(ArgAction::Set)
                .value_parser(p)
                .value_name(
                    s.value_name
                        .map_or_else(|| s.name.to_uppercase(), String::from),
                )
                .help(help),
        ),
        _ => {
            let no = format!("no_{}", s.name);
            let negation = s.negation.map_or_else(
                || {
                    format!(
                        "Turns --{long} off (undoes `{} = true` of a --config file)",
                        s.name
                    )
                },
                String::from,
            );
            cmd.arg(
                Arg::new(s.name)
                    .long(long.clone())
                    .action(ArgAction::SetTrue)
                    .overrides_with(no.clone())
                    .help(help),
            )
            .arg(
                Arg::new(no.clone())
                    .long(format!("no-{long}"))
                    .action(ArgAction::SetTrue)
                    .overrides_with(s.name)
                    .help(negation),
            )
        }
    }
}

/// A switch as given: `Some(true)` for `--name`, `Some(false)` for `--no-name` (the last one
/// wins), `None` for neither.
#[cfg(feature = "clap")]
pub(crate) fn switch_given(m: &clap::ArgMatches, name: &str) -> Option<bool> {
    let given = |id: &str| m.try_get_one::<bool>(id).ok().flatten().copied() == Some(true);
    if given(name) {
        Some(true)
    } else if given(&format!("no_{name}")) {
        Some(false)
    } else {
        None
    }
}

/// Declares a settings struct and its overrides once; see the module's doc. Each entry:
///
/// ```text
/// /// Doc (the flag's help too).
/// #[flag(value_name = "MINUTES", default_words = "...", negation = "...")]   (optional)
/// name: Type = default => Scope kind,      kind: value, switch or tristate
/// ```
macro_rules! settings {
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident;
        $(#[doc = $odoc:literal])*
        pub struct $over:ident;
        {
            $(
                $(#[doc = $doc:literal])*
                $(#[flag($($fk:ident = $fv:literal),* $(,)?)])?
                $field:ident: $ty:ty = $default:expr => $scope:ident $kind:ident,
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )* }
            }
        }

        impl $name {
            /// Every setting, in declaration order.
            pub const SETTINGS: &'static [$crate::settings::Setting] = &[
                $( $crate::settings::Setting {
                    name: stringify!($field),
                    doc: concat!($($doc, "\n",)*),
                    scope: $crate::settings::Scope::$scope,
                    flag: settings!(@flag $kind),
                    $($($fk: Some($fv),)*)?
                    ..$crate::settings::Setting::BARE
                }, )*
            ];
        }

        $(#[doc = $odoc])*
        #[derive(Debug, Default, Clone, PartialEq)]
        pub struct $over {
            $( #[doc = concat!("`", stringify!($field), "`, if given.")] pub $field: Option<$ty>, )*
        }

        impl $over {
            /// Sets every setting given here on `c`.
            pub fn apply(&self, c: &mut $name) {
                $( if let Some(v) = &self.$field { c.$field = v.clone(); } )*
            }
        }

        #[cfg(feature = "clap")]
        impl clap::FromArgMatches for $over {
            fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
                Ok($over { $( $field: settings!(@get $kind m $field $ty), )* })
            }

            fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
                let given = Self::from_arg_matches(m)?;
                $( if given.$field.is_some() { self.$field = given.$field; } )*
                Ok(())
            }
        }

        #[cfg(feature = "clap")]
        impl clap::Args for $over {
            fn augment_args(cmd: clap::Command) -> clap::Command {
                let d = $name::default();
                let mut cmd = cmd;
                $(
                    cmd = $crate::settings::add_flags(
                        cmd,
                        $crate::settings::find($name::SETTINGS, stringify!($field)),
                        settings!(@parser $kind $ty),
                        $crate::settings::shown(&d.$field),
                    );
                )*
                cmd
            }

            fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
                Self::augment_args(cmd)
            }
        }
    };
    (@flag value) => { $crate::settings::Flag::Value };
    (@flag switch) => { $crate::settings::Flag::Switch };
    (@flag tristate) => { $crate::settings::Flag::Tristate };
    (@parser value $ty:ty) => { Some(clap::value_parser!($ty).into()) };
    (@parser $kind:ident $ty:ty) => { None };
    (@get value $m:ident $f:ident $ty:ty) => { $m.get_one::<$ty>(stringify!($f)).cloned() };
    (@get switch $m:ident $f:ident $ty:ty) => {
        $crate::settings::switch_given($m, stringify!($f))
    };
    (@get tristate $m:ident $f:ident $ty:ty) => {
        $crate::settings::switch_given($m, stringify!($f)).map(Some)
    };
}
pub(crate) use settings;
