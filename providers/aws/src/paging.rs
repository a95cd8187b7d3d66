//! Paged AWS requests: every page of a paginated request, read to the end.

/// Sends the paginated request `$request` (the fluent builder of an SDK operation
/// with a paginator) at `$page_size` entries a page, and runs `$each` on every page
/// (`|page| …`) in turn; the whole is the number of pages read. A page that fails
/// returns its error, as a [`ProviderError`](tether_api::external::ProviderError),
/// from the enclosing function.
///
/// Each operation has a paginator of its own type, with no trait in common: hence a
/// macro.
macro_rules! for_each_page {
    ($request:expr, $page_size:expr, |$page:ident| $each:expr) => {{
        let mut paginator = $request.into_paginator().page_size($page_size).send();
        let mut pages: usize = 0;
        while let Some($page) = paginator.next().await {
            let $page = $page.map_err($crate::errors::provider_error)?;
            pages += 1;
            $each;
        }
        pages
    }};
}

pub(crate) use for_each_page;
