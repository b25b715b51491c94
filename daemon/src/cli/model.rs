//! `glimpse model`: looking at model folders (`inspect`) and loading the
//! config's model once ahead of time (`warmup`).

use std::path::Path;
use std::process::ExitCode;

use super::{exit_code, start_logging, EX_CONFIG, EX_DATAERR};
use crate::config;

/// `glimpse model inspect`: a model folder's graphs, token grid and sizes.
pub fn inspect(path: &Path, variant: &str) -> ExitCode {
    match crate::infer::ModelFolder::open(path, variant) {
        Ok(folder) => {
            print!("{folder}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EX_DATAERR)
        }
    }
}

/// `glimpse model warmup` with the config at `path`.
pub fn warmup_command(path: &Path) -> ExitCode {
    let (_logging, config) = match start_logging(path) {
        Ok(started) => started,
        Err(code) => return code,
    };
    exit_code(warmup(&config), EX_CONFIG)
}

/// `glimpse model warmup`: one frame and one short answer, timed.
pub fn warmup(config: &config::Config) -> anyhow::Result<()> {
    use crate::llm::{self, Prompt, Sampling};
    use std::time::Instant;
    let Some(model_config) = &config.model else {
        anyhow::bail!("the config has no [model] table");
    };
    let started = Instant::now();
    let model = crate::infer::load_in(model_config, config.service.state_dir())?;
    println!("runtime        {}", model.runtime());
    println!("load           {:.1} s", started.elapsed().as_secs_f64());
    let mut backend = model.backend();
    let info = backend.info().clone();
    let side = info.image_size as usize;
    let pixels = vec![0.0f32; 3 * side * side];
    for pass in ["first", "second"] {
        let encoding = Instant::now();
        let visual = backend.encode_image(&pixels)?;
        let encoded = encoding.elapsed();
        let mut ids = vec![1i64; 4];
        ids.extend(std::iter::repeat_n(
            info.image_token_id,
            info.tokens_per_image(),
        ));
        ids.extend([1i64; 4]);
        let prompt = Prompt {
            positions: (0..ids.len() as i64).collect(),
            ids,
            visual,
        };
        let sampling = Sampling {
            max_new_tokens: 8,
            ..Sampling::default()
        };
        let g = llm::generate(
            backend.as_mut(),
            &prompt,
            &sampling,
            &[],
            false,
            &mut |_| true,
        )?;
        println!(
            "{pass:<6} run     encoder {:.0} ms, prefill {} tokens {:.0} ms, {} tokens decoded in {:.0} ms",
            encoded.as_secs_f64() * 1e3,
            g.prompt_tokens,
            g.prefill.as_secs_f64() * 1e3,
            g.tokens.len(),
            g.decode.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
