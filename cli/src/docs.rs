//! `tokentrail completions SHELL` and `tokentrail man DIR`: shell completions and man pages,
//! generated from the clap definitions `--help` prints, so the three never disagree.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

/// Options of `tokentrail completions`.
#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell, e.g. `bash` (then `source <(tokentrail completions bash)`), `zsh`, `fish`,
    /// `elvish` or `powershell`.
    #[arg(value_enum)]
    shell: Shell,
}

/// Options of `tokentrail man`.
#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Directory to write `tokentrail.1` and one `tokentrail-<subcommand>.1` per subcommand
    /// into (made if missing), e.g. `/usr/local/share/man/man1`.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

/// Prints the completion script of `args.shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> ExitCode {
    let mut command = crate::Cli::command();
    clap_complete::generate(args.shell, &mut command, "tokentrail", &mut io::stdout());
    ExitCode::SUCCESS
}

/// Writes the man pages into `args.dir`.
pub fn man(args: &ManArgs) -> ExitCode {
    match write_man_pages(&args.dir) {
        Ok(n) => {
            eprintln!("tokentrail man: wrote {n} pages to {}", args.dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tokentrail man: cannot write into {}: {e}", args.dir.display());
            ExitCode::FAILURE
        }
    }
}

/// `tokentrail.1` and a page per subcommand (`tokentrail-analyze.1`, as git names its pages);
/// how many were written.
fn write_man_pages(dir: &Path) -> io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut command = crate::Cli::command();
    // Builds the subcommands' full names and usage lines, as the pages print them.
    command.build();
    let mut pages = 0;
    let mut write = |name: String, page: clap::Command| -> io::Result<()> {
        let mut roff = Vec::new();
        clap_mangen::Man::new(page).title(name.clone()).render(&mut roff)?;
        std::fs::write(dir.join(format!("{name}.1")), roff)?;
        pages += 1;
        Ok(())
    };
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("tokentrail-{}", sub.get_name());
        write(name, sub.clone())?;
    }
    write(String::from("tokentrail"), command)?;
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_has_a_man_page_with_its_flags() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_man_pages(dir.path()).unwrap();
        let subcommands = crate::Cli::command().get_subcommands().count();
        assert_eq!(pages, subcommands + 1);
        let analyze = std::fs::read_to_string(dir.path().join("tokentrail-analyze.1")).unwrap();
        assert!(analyze.contains(".TH tokentrail-analyze 1"), "{analyze}");
        assert!(analyze.contains("\\-\\-since\\-time"), "the page lists the flags");
        let main = std::fs::read_to_string(dir.path().join("tokentrail.1")).unwrap();
        assert!(main.contains("tokentrail\\-collect(1)"), "the main page names the others: {main}");
    }
}
