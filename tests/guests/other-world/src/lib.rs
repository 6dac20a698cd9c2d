//! Test guest: a valid component of an unrelated world (`acme:other/handler`). The host
//! must refuse it at load, naming the exports it misses.

wit_bindgen::generate!({
    path: "wit",
    world: "handler",
});

struct OtherWorld;

impl Guest for OtherWorld {
    fn transform(value: String) -> String {
        value.to_uppercase()
    }
}

export!(OtherWorld);
