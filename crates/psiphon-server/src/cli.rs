//! `psiphond` command line, tunnel-core's flags: `psiphond [flags] generate|run`. Flags take
//! `-flag value`, `-flag=value` or the `--` forms, before or after the command.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::generate::{GenerateOptions, parse_protocol_flag};

/// What to do.
#[derive(Debug, Clone)]
pub enum Command {
    /// Write a new server's files.
    Generate(GenerateOptions),
    /// Run the server with this config file.
    Run {
        /// `-config`.
        config: PathBuf,
    },
    /// Print usage.
    Help,
}

/// Usage text.
pub const USAGE: &str = "\
usage: psiphond [flags] generate|run

flags:
  -config FILE         config file (default psiphond.config)
  -ipaddress IP        generate: IP address for the server entry (default 127.0.0.1)
  -protocol P:PORT     generate: tunnel protocol and port, repeatable (SSH, OSSH)
  -logFilename FILE    generate: LogFilename written into the config
  -trafficRules FILE   generate: traffic rules file (default psiphond-traffic-rules.config)
  -psinet FILE         generate: psinet database file (default psinet.json)
  -serverEntry FILE    generate: server entry file (default server-entry.dat)
  -osl FILE, -tactics FILE, -web PORT
                       accepted for compatibility; not written yet
";

/// Parses the arguments after the program name.
///
/// # Errors
/// [`Error::Usage`] for an unknown flag, a missing value or command,
/// [`Error::UnsupportedProtocol`] for a `-protocol` other than SSH or OSSH.
pub fn parse_args<I>(args: I) -> Result<Command>
where
    I: IntoIterator<Item = String>,
{
    let mut gen_opts = GenerateOptions::default();
    let mut config = None;
    let mut command = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            if command.is_some() {
                return Err(Error::Usage(format!("unexpected argument {arg:?}")));
            }
            command = Some(arg);
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (flag.to_owned(), None),
        };
        if matches!(name.as_str(), "h" | "help") {
            return Ok(Command::Help);
        }
        let mut value = || -> Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => args
                    .next()
                    .ok_or_else(|| Error::Usage(format!("flag -{name} needs a value"))),
            }
        };
        match name.as_str() {
            "config" => config = Some(PathBuf::from(value()?)),
            "ipaddress" => gen_opts.ip_address = value()?,
            "protocol" => gen_opts.protocols.push(parse_protocol_flag(&value()?)?),
            "logFilename" => gen_opts.log_filename = Some(value()?),
            "trafficRules" => gen_opts.traffic_rules_path = PathBuf::from(value()?),
            "psinet" => gen_opts.psinet_path = PathBuf::from(value()?),
            "serverEntry" => gen_opts.server_entry_path = PathBuf::from(value()?),
            "osl" | "tactics" | "web" => {
                value()?;
            }
            "interface" => {
                return Err(Error::Usage(
                    "-interface is not supported; give -ipaddress".to_owned(),
                ));
            }
            _ => return Err(Error::Usage(format!("unknown flag -{name}"))),
        }
    }
    match command.as_deref() {
        Some("generate") => {
            if let Some(c) = config {
                gen_opts.config_path = c;
            }
            Ok(Command::Generate(gen_opts))
        }
        Some("run") => Ok(Command::Run {
            config: config.unwrap_or_else(|| PathBuf::from("psiphond.config")),
        }),
        Some(other) => Err(Error::Usage(format!("unknown command {other:?}"))),
        None => Err(Error::Usage("missing command: generate or run".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_both_flag_forms() {
        let Command::Generate(g) = parse_args(args(
            "-ipaddress 192.0.2.1 --protocol OSSH:9999 -protocol=SSH:22 --config=c.json generate",
        ))
        .unwrap() else {
            panic!("not generate")
        };
        assert_eq!(g.ip_address, "192.0.2.1");
        assert_eq!(
            g.protocols,
            vec![("OSSH".to_owned(), 9999), ("SSH".to_owned(), 22)]
        );
        assert_eq!(g.config_path, PathBuf::from("c.json"));
        let Command::Run { config } = parse_args(args("run --config x")).unwrap() else {
            panic!("not run")
        };
        assert_eq!(config, PathBuf::from("x"));
        assert!(matches!(
            parse_args(args("-protocol FRONTED-MEEK-OSSH:443 generate")),
            Err(Error::UnsupportedProtocol(_))
        ));
        assert!(parse_args(args("-bogus 1 run")).is_err());
        assert!(parse_args(args("")).is_err());
        assert!(parse_args(args("-protocol")).is_err());
    }
}
