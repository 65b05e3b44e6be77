// htmx swaps only 2xx answers by default; the UI's error answers are banners meant to be shown
// where the result would have gone (the API's message, never a stack trace).
document.addEventListener("htmx:beforeSwap", function (event) {
  if (event.detail.xhr.status >= 400 && event.detail.xhr.getResponseHeader("HX-Redirect") === null) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
