//! `palisade-trim <filter Cargo.toml> <built.wasm> <out.wasm>`: writes the
//! module without the stream-callback exports the filter does not declare.

use std::process::ExitCode;

fn run(args: &[String]) -> Result<String, String> {
    let [manifest, input, output] = args else {
        return Err("usage: palisade-trim <filter Cargo.toml> <built.wasm> <out.wasm>".into());
    };
    let text = std::fs::read_to_string(manifest).map_err(|e| format!("{manifest}: {e}"))?;
    let declared =
        palisade_trim::declared_callbacks(&text).map_err(|e| format!("{manifest}: {e}"))?;
    let wasm = std::fs::read(input).map_err(|e| format!("{input}: {e}"))?;
    let unused = palisade_trim::unused_exports(&declared);
    let (trimmed, removed) =
        palisade_trim::remove_exports(&wasm, &unused).map_err(|e| format!("{input}: {e}"))?;
    std::fs::write(output, trimmed).map_err(|e| format!("{output}: {e}"))?;
    Ok(format!(
        "{output}: keeps {}; removed {}",
        declared.join(", "),
        if removed.is_empty() {
            "nothing".to_string()
        } else {
            removed.join(", ")
        }
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("palisade-trim: {e}");
            ExitCode::FAILURE
        }
    }
}
