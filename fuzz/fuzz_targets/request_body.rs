//! Bytes as the body of every JSON endpoint: `/verify`, `/request-otp`, `POST /admin/users`,
//! `PATCH /admin/users/{name}` and the notification service's `/send`, deserialized into the
//! real request types and validated as the handlers do (`mfa::input_checks`). Each must give a
//! value or a 4xx with a reason; a panic, or an error that is not that, is a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mfa::input_checks;

fn check<T>(endpoint: &str, result: Result<T, mfa::http::InvalidRequest>) {
    if let Err(e) = result {
        assert!(input_checks::is_clear_rejection(&e), "{endpoint}: {} {:?}", e.status, e.detail);
    }
}

fuzz_target!(|data: &[u8]| {
    check("/verify", input_checks::verify_body(data));
    check("/request-otp", input_checks::request_otp_body(data));
    check("POST /admin/users", input_checks::create_user_body(data));
    check("PATCH /admin/users/{name}", input_checks::update_user_body(data));
    check("POST /admin/users/{name}/authenticators", input_checks::create_authenticator_body(data));
    check("POST /admin/users/{name}/authenticators/{id}/resync", input_checks::resync_body(data));
    check("/send", input_checks::send_body(data));
    if let Ok(query) = std::str::from_utf8(data)
        && let Err(e) = input_checks::list_users_query(query)
    {
        assert!(!e.trim().is_empty(), "GET /admin/users: an empty reason");
    }
});
