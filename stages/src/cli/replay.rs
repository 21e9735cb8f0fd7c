//! `demandflow replay`: the command line of [`demandflow_stages::replay`].

use std::num::NonZeroUsize;
use std::path::PathBuf;

use demandflow_stages::provider::Api;

use super::args;

/// Decode a recorded SSE transcript and print its normalised events.
///
/// Runs FILE through the same decoder and parser as the live producers, fed
/// in chunks of N bytes (default: all at once). Prints each normalised event
/// as one JSON line, then one line
///   {"summary":{"status":S,"text":T,"usage":U,"events":N,...}}
/// where S is completed, incomplete, refused, failed or truncated, T the
/// concatenated text deltas, U {"input_tokens":I,"output_tokens":O} (the last
/// usage reported) or null, N the number of event lines; then stop_reason,
/// reasoning, refusal, tool_calls, server_tools and citations.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status:
  0  replayed, whatever the stream's outcome; a transcript that decodes but
     ends without a terminal event (a cut recording) is `truncated`, with a
     note on stderr
  1  the transcript does not decode (the output still ends with a failed
     `done` and the summary); nothing in it decodes as --api (an empty file,
     random bytes, another API's transcript); or it is cut as --api but
     complete as another API. A warning on stderr names the API it decodes
     as, if any.
  2  usage error, or FILE cannot be read")]
pub(crate) struct ReplayArgs {
    /// The API the transcript was recorded from
    #[arg(long, value_name = "API", value_parser = args::api())]
    api: Api,
    /// Feed the decoder N bytes at a time (the output is the same for any N)
    #[arg(long, value_name = "N", value_parser = chunk)]
    chunk: Option<NonZeroUsize>,
    /// The transcript (.sse)
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// `--chunk`: at least 1 byte.
fn chunk(text: &str) -> Result<NonZeroUsize, String> {
    args::positive::<usize>(text)
        .and_then(|n| NonZeroUsize::new(n).ok_or_else(|| "must be at least 1".to_owned()))
}

/// Runs the subcommand.
pub(crate) fn run(a: ReplayArgs) -> i32 {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    demandflow_stages::replay::run_file(a.api, a.chunk, &a.file, &mut out, &mut err)
}
