//! Bytes as a `.env` file: the dotenv grammar, then the whole `Settings` reader, as start-up
//! does. It must give settings (whose `mfa check-config` report can be printed) or errors
//! that each name a variable and say what is wrong; a panic or a nameless error is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mfa::config::vars;
use mfa::input_checks;

fuzz_target!(|data: &[u8]| {
    // Start-up reads the file as UTF-8 (a file that is not is refused before parsing).
    let Ok(text) = std::str::from_utf8(data) else { return };
    // A stand-in process environment, for `${NAME}` references and precedence.
    let environment = [("HOME".to_string(), "/home/mfa".to_string()), ("OTP_DIGITS".to_string(), "6".to_string())];
    let (env, result) = input_checks::config(text, &environment);
    match result {
        Ok(settings) => {
            let report = settings.report(&env);
            assert!(report.iter().all(|(var, value, _)| !var.is_empty() && !value.is_empty()));
        }
        Err(errors) => {
            assert!(!errors.0.is_empty());
            for e in &errors.0 {
                assert!(e.is_clear(), "{e:?}");
                let set = env.get(&e.var).is_some() || vars::is_known(&e.var);
                assert!(set, "{} is neither set nor a variable of ours", e.var);
            }
        }
    }
});
