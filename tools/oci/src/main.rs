//! `palisade-oci`: Wasm OCI images and Istio `WasmPlugin` manifests for the
//! built modules. Run from the repository root (the Makefile does).

use std::path::PathBuf;
use std::process::ExitCode;

use palisade_oci::image::Variant;
#[cfg(not(target_family = "wasm"))]
use palisade_oci::registry::Registry;
use palisade_oci::target::Target;
use palisade_oci::{layout, write_manifests, Error, ManifestDirs, Module, ModuleSource};

const USAGE: &str = "\
usage: palisade-oci [options] <command>

modules: every palisade_<filter>.wasm in --dist (image and template named
<filter>) and palisade.wasm, the bundle of every policy (named bundle)

commands:
  push        push both image variants of every module in --dist to --registry
              (<registry>/<name>:<tag> and :<tag>-compat), check the digests the
              registry reports, then write the WasmPlugin manifests
  manifests   write the WasmPlugin manifests only: with --registry they name the
              images (digests computed locally, nothing is contacted); with
              --url-base they name <url-base>/palisade_<filter>.wasm and
              <url-base>/palisade.wasm
  images      write the images as OCI image layouts under <dist>/oci/<name>/

options:
  --registry HOST[:PORT][/PATH]  where the images go (make: OCI_REGISTRY)
  --tag TAG                      release tag (default: the crate version)
  --url-base URL                 https://, http:// or file:// folder of the .wasm files
  --plain-http                   allow plain HTTP to a registry off loopback
  --dist DIR                     built modules (default: dist)
  --templates DIR                WasmPlugin templates (default: envoy/istio)
  --filters DIR                  filter sources with README.md (default: filters)
  --out DIR                      the separate modules' manifests and kustomization
                                 (default: <dist>/istio)
  --bundle-out DIR               the bundle's manifest and kustomization, apart so
                                 that one `kubectl apply` never installs both
                                 (default: <dist>/istio-bundle)
";

struct Options {
    command: String,
    registry: Option<String>,
    tag: String,
    url_base: Option<String>,
    plain_http: bool,
    dist: PathBuf,
    templates: PathBuf,
    filters: PathBuf,
    out: Option<PathBuf>,
    bundle_out: Option<PathBuf>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, Error> {
    let mut options = Options {
        command: String::new(),
        registry: None,
        tag: env!("CARGO_PKG_VERSION").to_string(),
        url_base: None,
        plain_http: false,
        dist: PathBuf::from("dist"),
        templates: PathBuf::from("envoy/istio"),
        filters: PathBuf::from("filters"),
        out: None,
        bundle_out: None,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Error::new(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--registry" => {
                options.registry = Some(value("--registry").map_err(|e| {
                    e.context("no registry given (make oci OCI_REGISTRY=host[:port]/path)")
                })?)
            }
            "--tag" => options.tag = value("--tag")?,
            "--url-base" => options.url_base = Some(value("--url-base")?),
            "--plain-http" => options.plain_http = true,
            "--dist" => options.dist = value("--dist")?.into(),
            "--templates" => options.templates = value("--templates")?.into(),
            "--filters" => options.filters = value("--filters")?.into(),
            "--out" => options.out = Some(value("--out")?.into()),
            "--bundle-out" => options.bundle_out = Some(value("--bundle-out")?.into()),
            "-h" | "--help" => options.command = "help".into(),
            command if !command.starts_with('-') && options.command.is_empty() => {
                options.command = command.to_string()
            }
            other => {
                return Err(Error::new(format!(
                    "unexpected argument `{other}`\n\n{USAGE}"
                )))
            }
        }
    }
    let valid_tag = !options.tag.is_empty()
        && options.tag.len() <= 120
        && options
            .tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !valid_tag {
        return Err(Error::new(format!(
            "`{}` is not an image tag ([A-Za-z0-9._-], at most 120)",
            options.tag
        )));
    }
    Ok(options)
}

fn run(options: Options) -> Result<(), Error> {
    let defaults = ManifestDirs::in_dist(&options.dist);
    let dirs = ManifestDirs {
        modules: options.out.clone().unwrap_or(defaults.modules),
        bundle: options.bundle_out.clone().unwrap_or(defaults.bundle),
    };
    match options.command.as_str() {
        "help" => {
            print!("{USAGE}");
            Ok(())
        }
        "images" => {
            for module in Module::all_in(&options.dist)? {
                let images = Variant::ALL
                    .iter()
                    .map(|&v| Ok((v.tag(&options.tag), module.image(v, &options.tag)?)))
                    .collect::<Result<Vec<_>, Error>>()?;
                let dir = options.dist.join("oci").join(&module.name);
                let refs: Vec<_> = images.iter().map(|(t, i)| (t.clone(), i)).collect();
                layout::write(&dir, &refs)?;
                for (tag, image) in &images {
                    println!("{}:{tag}  {}", dir.display(), image.digest);
                }
            }
            Ok(())
        }
        #[cfg(target_family = "wasm")]
        "push" => Err(Error::new(
            "push talks to a registry: run the host build of palisade-oci",
        )),
        #[cfg(not(target_family = "wasm"))]
        "push" => {
            let spec = options
                .registry
                .as_deref()
                .ok_or_else(|| Error::new("push needs --registry (make oci OCI_REGISTRY=...)"))?;
            let target = Target::parse(spec)?;
            let modules = Module::all_in(&options.dist)?;
            let registry = Registry::connect(target.clone(), options.plain_http)?;
            for module in &modules {
                for variant in Variant::ALL {
                    let image = module.image(variant, &options.tag)?;
                    let tag = variant.tag(&options.tag);
                    let digest = registry.push(&module.name, &tag, &image)?;
                    println!("pushed {}  {digest}", target.tagged(&module.name, &tag));
                }
            }
            let source = ModuleSource::Registry {
                target,
                tag: options.tag.clone(),
            };
            report(write_manifests(
                &modules,
                &source,
                &options.templates,
                &options.filters,
                &dirs,
            )?);
            Ok(())
        }
        "manifests" => {
            let source = match (&options.registry, &options.url_base) {
                (Some(spec), None) => ModuleSource::Registry {
                    target: Target::parse(spec)?,
                    tag: options.tag.clone(),
                },
                (None, Some(base)) => {
                    let known = ["https://", "http://", "file://"];
                    if !known.iter().any(|s| base.starts_with(s)) {
                        return Err(Error::new(format!(
                            "--url-base `{base}` must start with https://, http:// or file://"
                        )));
                    }
                    ModuleSource::UrlBase(base.clone())
                }
                _ => {
                    return Err(Error::new(
                        "manifests needs exactly one of --registry and --url-base",
                    ))
                }
            };
            let modules = Module::all_in(&options.dist)?;
            report(write_manifests(
                &modules,
                &source,
                &options.templates,
                &options.filters,
                &dirs,
            )?);
            Ok(())
        }
        "" => Err(Error::new(format!("no command given\n\n{USAGE}"))),
        other => Err(Error::new(format!("unknown command `{other}`\n\n{USAGE}"))),
    }
}

fn report(files: Vec<PathBuf>) {
    for file in files {
        println!("wrote {}", file.display());
    }
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1)).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("palisade-oci: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, Error> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn parses_the_make_oci_command_line() {
        let o = parse(&[
            "push",
            "--registry",
            "127.0.0.1:5000/palisade",
            "--tag",
            "1.2.3",
            "--dist",
            "d",
        ])
        .unwrap();
        assert_eq!(o.command, "push");
        assert_eq!(o.registry.as_deref(), Some("127.0.0.1:5000/palisade"));
        assert_eq!(o.tag, "1.2.3");
        assert_eq!(o.dist, PathBuf::from("d"));
        let o = parse(&["manifests", "--out", "m", "--bundle-out", "b"]).unwrap();
        assert_eq!(o.out, Some(PathBuf::from("m")));
        assert_eq!(o.bundle_out, Some(PathBuf::from("b")));
        assert_eq!(parse(&["images"]).unwrap().tag, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn refuses_bad_arguments() {
        let empty = parse(&["push", "--registry", ""])
            .err()
            .unwrap()
            .to_string();
        assert!(empty.contains("OCI_REGISTRY"), "{empty}");
        assert!(parse(&["push", "--tag", "a/b"]).is_err());
        assert!(parse(&["push", "--tag", ":latest"]).is_err());
        assert!(parse(&["push", "--frobnicate"]).is_err());
        assert!(parse(&["push", "manifests"]).is_err());
    }
}
