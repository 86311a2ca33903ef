//! JSON request bodies, decoded the way the server decodes them
//! (`extract::parse_object`: a JSON object, unknown fields refused) into every
//! struct a handler takes — among them the JSON form of session-recording
//! uploads (`StartRecording`, `AppendChunk`), what the gateway sends, token
//! exchange, federations and OIDC sign-in: any bytes give a value or an
//! error, never a panic.
#![no_main]
use latch_server::extract::parse_object;
use latch_server::routes::{
    auth, exchange, federations, gateway, groups, jit, oidc_login, policy, recordings, sps, ssh, sys, tokens, users,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_object::<auth::LoginRequest>(data);
    let _ = parse_object::<auth::SpLoginRequest>(data);
    let _ = parse_object::<auth::MfaConfirm>(data);
    let _ = parse_object::<users::CreateUser>(data);
    let _ = parse_object::<users::SetPassword>(data);
    let _ = parse_object::<groups::CreateGroup>(data);
    let _ = parse_object::<groups::AddMember>(data);
    let _ = parse_object::<sps::CreateSp>(data);
    let _ = parse_object::<policy::ApplyRequest>(data);
    let _ = parse_object::<policy::SimulateRequest>(data);
    let _ = parse_object::<policy::ReplayRequest>(data);
    let _ = parse_object::<jit::CreateRequest>(data);
    let _ = parse_object::<jit::CreateBreakglass>(data);
    let _ = parse_object::<jit::Comment>(data);
    let _ = parse_object::<jit::Reason>(data);
    let _ = parse_object::<jit::OptionalReason>(data);
    let _ = parse_object::<ssh::SignSsh>(data);
    let _ = parse_object::<tokens::IssueToken>(data);
    let _ = parse_object::<tokens::IntrospectRequest>(data);
    let _ = parse_object::<recordings::StartRecording>(data);
    let _ = parse_object::<recordings::AppendChunk>(data);
    let _ = parse_object::<gateway::AuthorizeSession>(data);
    let _ = parse_object::<gateway::GrantPoll>(data);
    let _ = parse_object::<sys::AdvanceClock>(data);
    let _ = parse_object::<exchange::ExchangeRequest>(data);
    let _ = parse_object::<federations::CreateFederation>(data);
    let _ = parse_object::<oidc_login::StartRequest>(data);
    let _ = parse_object::<oidc_login::CallbackRequest>(data);
});
