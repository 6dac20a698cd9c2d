//! The `#[transform]` attribute of `sluice-sdk`. Use it through `sluice_sdk::transform`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, Item, ItemFn, Path, ReturnType, Type};

const SIGNATURE: &str = "fn(msg: Message, out: &mut Writer) -> Result<(), E>";

/// Turns `fn(Message, &mut Writer) -> Result<(), E>` into the component's `init` and
/// `transform-batch` exports; `#[transform(init = setup)]` also runs
/// `fn setup(&Config) -> Result<(), E>` in `init`. See `sluice_sdk::transform`.
#[proc_macro_attribute]
pub fn transform(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    let expanded = match expand(args, item.clone()) {
        Ok(expanded) => expanded,
        // Keep the function so the author sees this error, not a cascade of "not found" ones.
        Err(error) => {
            let error = error.to_compile_error();
            quote! { #error #item }
        }
    };
    expanded.into()
}

fn expand(args: TokenStream, item: TokenStream2) -> syn::Result<TokenStream2> {
    let init = parse_args(args)?;
    let function = match syn::parse2::<Item>(item)? {
        Item::Fn(function) => function,
        other => {
            return Err(syn::Error::new(
                other.span(),
                format!("#[transform] applies to a free function `{SIGNATURE}`"),
            ));
        }
    };
    let checked = check_signature(&function)?;
    Ok(generate(&function, &checked, init.as_ref()))
}

/// Parses `init = path` (or nothing).
fn parse_args(args: TokenStream) -> syn::Result<Option<Path>> {
    let mut init = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("init") {
            if init.is_some() {
                return Err(meta.error("`init` is given twice"));
            }
            init = Some(meta.value()?.parse::<Path>()?);
            Ok(())
        } else {
            Err(meta.error("unknown #[transform] argument; expected `init = <function>`"))
        }
    });
    syn::parse::Parser::parse(parser, args)?;
    Ok(init)
}

/// Spans of the parts of a well-formed signature, for errors the type checker reports.
struct Checked {
    message_type: Span,
    writer_type: Span,
    return_type: Span,
}

fn check_signature(function: &ItemFn) -> syn::Result<Checked> {
    let signature = &function.sig;
    let reject = |tokens: &dyn ToTokens, what: &str| {
        Err(syn::Error::new_spanned(
            tokens,
            format!("#[transform] functions cannot be {what}; expected `{SIGNATURE}`"),
        ))
    };
    if let Some(token) = &signature.constness {
        return reject(token, "`const`");
    }
    if let Some(token) = &signature.asyncness {
        return reject(token, "`async`");
    }
    if let Some(token) = &signature.unsafety {
        return reject(token, "`unsafe`");
    }
    if let Some(abi) = &signature.abi {
        return reject(abi, "`extern`");
    }
    if !signature.generics.params.is_empty() || signature.generics.where_clause.is_some() {
        return reject(&signature.generics, "generic");
    }
    if let Some(variadic) = &signature.variadic {
        return reject(variadic, "variadic");
    }

    let mut types = Vec::with_capacity(2);
    for argument in &signature.inputs {
        match argument {
            FnArg::Receiver(receiver) => return reject(receiver, "methods"),
            FnArg::Typed(typed) => types.push(&*typed.ty),
        }
    }
    let [message_type, writer_type] = types[..] else {
        let span = if signature.inputs.is_empty() {
            signature.paren_token.span.join()
        } else {
            signature.inputs.span()
        };
        return Err(syn::Error::new(
            span,
            format!(
                "#[transform] functions take two parameters, found {}; expected `{SIGNATURE}`",
                types.len()
            ),
        ));
    };
    if matches!(message_type, Type::Reference(_)) {
        return Err(syn::Error::new_spanned(
            message_type,
            "the message is passed by value: `msg: Message`",
        ));
    }
    match writer_type {
        Type::Reference(reference) if reference.mutability.is_some() => {}
        _ => {
            return Err(syn::Error::new_spanned(
                writer_type,
                "the writer is passed by mutable reference: `out: &mut Writer`",
            ));
        }
    }

    let return_type = match &signature.output {
        ReturnType::Type(_, ty) if is_result(ty) => ty.span(),
        ReturnType::Type(_, ty) => {
            return Err(syn::Error::new_spanned(
                ty,
                "#[transform] functions return `Result<(), E>`",
            ));
        }
        ReturnType::Default => {
            return Err(syn::Error::new(
                signature.paren_token.span.close(),
                "#[transform] functions return `Result<(), E>`; add `-> Result<()>`",
            ));
        }
    };
    Ok(Checked {
        message_type: message_type.span(),
        writer_type: writer_type.span(),
        return_type,
    })
}

/// Whether `ty` looks like a `Result` (`Result<()>`, `anyhow::Result<()>`, `io::Result<()>`).
/// The type checker verifies it really is `Result<(), E>`.
fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident.to_string().ends_with("Result")),
        Type::Group(group) => is_result(&group.elem),
        Type::Paren(paren) => is_result(&paren.elem),
        _ => false,
    }
}

fn generate(function: &ItemFn, checked: &Checked, init: Option<&Path>) -> TokenStream2 {
    let name = &function.sig.ident;
    // Spanned so that a wrong type is reported at the author's parameter or return type.
    let message = quote_spanned!(checked.message_type=> __sluice_message);
    let writer = quote_spanned!(checked.writer_type=> __sluice_writer);
    let result = quote_spanned!(checked.return_type=>
        let __sluice_result: ::core::result::Result<(), _> = #name(#message, #writer);
    );
    let map_error = quote_spanned!(checked.return_type=>
        ::sluice_sdk::__private::into_error!(__sluice_error)
    );
    let setup = match init {
        Some(init) => {
            let call = quote_spanned!(init.span()=>
                let __sluice_result: ::core::result::Result<(), _> = #init(__sluice_config);
            );
            let map_error = quote_spanned!(init.span()=>
                ::sluice_sdk::__private::into_error!(__sluice_error)
            );
            quote! {
                |__sluice_config| {
                    #call
                    match __sluice_result {
                        ::core::result::Result::Ok(()) => ::core::result::Result::Ok(()),
                        ::core::result::Result::Err(__sluice_error) => {
                            ::core::result::Result::Err(#map_error)
                        }
                    }
                }
            }
        }
        None => quote! { |_| ::core::result::Result::Ok(()) },
    };

    quote! {
        #function

        #[doc(hidden)]
        const _: () = {
            #[allow(dead_code, reason = "a marker type: the exports name it, nothing constructs it")]
            struct __SluiceTransform;

            impl ::sluice_sdk::__private::Guest for __SluiceTransform {
                fn init(
                    __sluice_config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    ::sluice_sdk::__private::run_init(__sluice_config, #setup)
                }

                fn transform_batch(
                    __sluice_batch: ::std::vec::Vec<u8>,
                ) -> ::std::vec::Vec<u8> {
                    ::sluice_sdk::__private::run_batch(__sluice_batch, |__sluice_message, __sluice_writer| {
                        #result
                        match __sluice_result {
                            ::core::result::Result::Ok(()) => ::core::result::Result::Ok(()),
                            ::core::result::Result::Err(__sluice_error) => {
                                ::core::result::Result::Err(#map_error)
                            }
                        }
                    })
                }
            }

            #[cfg(target_arch = "wasm32")]
            ::sluice_sdk::__private::bindings::export!(
                __SluiceTransform with_types_in ::sluice_sdk::__private::bindings
            );

            // Natively nothing calls the exports, which would make the author's functions
            // "never used"; this reference keeps them live without exporting anything.
            #[cfg(not(target_arch = "wasm32"))]
            const _: [fn(); 2] = [
                || {
                    let _ = <__SluiceTransform as ::sluice_sdk::__private::Guest>::init;
                },
                || {
                    let _ = <__SluiceTransform as ::sluice_sdk::__private::Guest>::transform_batch;
                },
            ];
        };
    }
}
