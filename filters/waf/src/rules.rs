//! What a signature is: an id, a family, a paranoia level, a severity, the
//! request parts it inspects, the transformations it needs, and a pattern.

use crate::transform::Transform;

/// The family a rule belongs to; metrics and exclusions name families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// Protocol attacks: request smuggling signals, CRLF / response splitting.
    Protocol,
    /// Known attack tools (scanners) by their user agent or probe paths.
    Scanner,
    /// Path traversal and local file inclusion.
    Lfi,
    /// Remote file inclusion and server-side request forgery.
    Rfi,
    /// OS command injection (Unix shells, cmd.exe, PowerShell).
    Rce,
    /// PHP code injection.
    Php,
    /// Java: JNDI / Log4Shell lookups, deserialization, class abuse.
    Java,
    /// Server-side template injection, Node.js / Python code injection.
    Template,
    /// NoSQL (MongoDB operator) injection.
    Nosql,
    /// LDAP filter injection.
    Ldap,
    /// Session fixation: a session id planted through a link or a page.
    Session,
    /// XML external entities.
    Xxe,
    /// Cross-site scripting.
    Xss,
    /// SQL injection.
    Sqli,
}

impl Family {
    /// Every built-in family, in a stable order.
    pub const ALL: [Family; 14] = [
        Family::Protocol,
        Family::Scanner,
        Family::Lfi,
        Family::Rfi,
        Family::Rce,
        Family::Php,
        Family::Java,
        Family::Template,
        Family::Nosql,
        Family::Ldap,
        Family::Session,
        Family::Xxe,
        Family::Xss,
        Family::Sqli,
    ];

    /// The name used in configuration, metrics and the decision.
    pub fn name(self) -> &'static str {
        match self {
            Family::Protocol => "protocol",
            Family::Scanner => "scanner",
            Family::Lfi => "lfi",
            Family::Rfi => "rfi",
            Family::Rce => "rce",
            Family::Php => "php",
            Family::Java => "java",
            Family::Template => "template",
            Family::Nosql => "nosql",
            Family::Ldap => "ldap",
            Family::Session => "session",
            Family::Xxe => "xxe",
            Family::Xss => "xss",
            Family::Sqli => "sqli",
        }
    }

    /// The family with this configuration name.
    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// How much a match adds to the anomaly score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// 5 points: enough on its own at the default threshold.
    Critical,
    /// 4 points.
    Error,
    /// 3 points.
    Warning,
    /// 2 points.
    Notice,
}

impl Severity {
    /// The anomaly score this severity adds (CRS's defaults).
    pub fn score(self) -> u32 {
        match self {
            Severity::Critical => 5,
            Severity::Error => 4,
            Severity::Warning => 3,
            Severity::Notice => 2,
        }
    }
}

/// The request parts a rule inspects, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Targets(pub u16);

impl Targets {
    /// The method.
    pub const METHOD: Targets = Targets(1);
    /// The path without its query (percent-encoded as sent).
    pub const PATH: Targets = Targets(1 << 1);
    /// Argument values: query, form, JSON strings, multipart fields, XML text and attributes.
    pub const ARGS: Targets = Targets(1 << 2);
    /// Argument names: query and form names, JSON keys, multipart field names.
    pub const ARG_NAMES: Targets = Targets(1 << 3);
    /// Cookie values.
    pub const COOKIES: Targets = Targets(1 << 4);
    /// Cookie names.
    pub const COOKIE_NAMES: Targets = Targets(1 << 5);
    /// The selected headers (`User-Agent`, `Referer` and the configured ones).
    pub const HEADERS: Targets = Targets(1 << 6);
    /// Every other header (not `Authorization`, `Cookie`).
    pub const OTHER_HEADERS: Targets = Targets(1 << 7);
    /// Multipart file names.
    pub const FILES: Targets = Targets(1 << 8);
    /// A body that is not parsed into arguments (raw text, XML as a whole).
    pub const BODY: Targets = Targets(1 << 9);
    /// The query string as a whole (still percent-encoded).
    pub const QUERY: Targets = Targets(1 << 10);

    /// Arguments, their names, cookies, selected headers, file names, raw bodies.
    pub const INPUT: Targets = Targets(
        Self::ARGS.0
            | Self::ARG_NAMES.0
            | Self::COOKIES.0
            | Self::COOKIE_NAMES.0
            | Self::HEADERS.0
            | Self::FILES.0
            | Self::BODY.0,
    );
    /// Everything a client sends except the method (and the query string
    /// as a whole: its arguments are inspected one by one).
    pub const ALL: Targets = Targets(Self::INPUT.0 | Self::PATH.0 | Self::OTHER_HEADERS.0);

    /// Both sets.
    pub const fn or(self, other: Targets) -> Targets {
        Targets(self.0 | other.0)
    }

    /// Whether the sets share a part.
    pub fn intersects(self, other: Targets) -> bool {
        self.0 & other.0 != 0
    }

    /// The target with this configuration name.
    pub fn from_name(name: &str) -> Option<Targets> {
        Some(match name {
            "method" => Self::METHOD,
            "path" => Self::PATH,
            "args" => Self::ARGS,
            "arg_names" => Self::ARG_NAMES,
            "cookies" => Self::COOKIES,
            "cookie_names" => Self::COOKIE_NAMES,
            "headers" => Self::HEADERS,
            "other_headers" => Self::OTHER_HEADERS,
            "files" => Self::FILES,
            "body" => Self::BODY,
            "query" => Self::QUERY,
            _ => return None,
        })
    }
}

/// What a rule looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// A regular expression (regex-automata syntax, no backreferences or
    /// look-around), matched anywhere in the transformed value.
    Regex(String),
    /// Any of these phrases (ASCII case-insensitive); with `word` set a
    /// phrase counts only when not part of a longer word.
    Phrases {
        /// The phrases.
        list: Vec<String>,
        /// Require word boundaries around each phrase.
        word: bool,
    },
}

/// When a match counts, beyond the pattern itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    /// Always.
    #[default]
    Always,
    /// Only when the request does not come from its own site: no `Referer`,
    /// or one naming another host (a session id that a link or another
    /// site planted, rather than the application's own page).
    ForeignReferer,
    /// Only when the URL in the value names a host other than the
    /// request's own (a link to another site, rather than to this one).
    ForeignUrl,
}

/// A signature before compilation (built-in or from the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// Unique id.
    pub id: u32,
    /// The family; custom rules may name any family, built-in or their own.
    pub family: String,
    /// 1 (few false positives) to 4 (paranoid).
    pub paranoia: u8,
    /// How much a match adds to the score.
    pub score: u32,
    /// What it inspects.
    pub targets: Targets,
    /// Applied in order before matching.
    pub transforms: Vec<Transform>,
    /// What it matches.
    pub pattern: Pattern,
    /// When a match counts.
    pub condition: Condition,
    /// One line for operators.
    pub description: String,
}
