//! `palisade`'s exit status: one code per outcome, the same for every command. Scripts and
//! CI branch on these numbers, so they never change.

use std::process::ExitCode;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: success; `eval`: every request allowed; `replay`: the `.wasm` and the native
    /// engine agree on every record.
    Ok,
    /// 1: `eval`: some request denied; `demo`: some sample request not decided as its file
    /// expects.
    Denied,
    /// 2: invalid input; every problem is printed on standard error (with `--error-format
    /// json` as the engine's `Errors`).
    Invalid,
    /// 3: `replay`: the `.wasm` and the native engine disagree on some record.
    Disagree,
    /// 4: `eval`: no request denied, but some pending on an external authorizer (a CUSTOM
    /// rule matched and the request carried no `extAuthz` answer from its provider:
    /// `custom-pending`).
    CustomPending,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Denied => 1,
            Exit::Invalid => 2,
            Exit::Disagree => 3,
            Exit::CustomPending => 4,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn every_outcome_keeps_its_documented_code() {
        let codes = [
            (Exit::Ok, 0),
            (Exit::Denied, 1),
            (Exit::Invalid, 2),
            (Exit::Disagree, 3),
            (Exit::CustomPending, 4),
        ];
        for (exit, code) in codes {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
    }
}
