() => {
  // Ctrl+Enter (Cmd+Enter) in the prompt box generates.
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && event.target.closest("#prompts")) {
      event.preventDefault();
      document.querySelector("#generate")?.click();
    }
  });
  // On a narrow screen the results sit below the whole form: Generate brings them into view.
  document.addEventListener("click", (event) => {
    if (!event.target.closest("#generate")) return;
    const form = document.querySelector("#form-column");
    const results = document.querySelector("#results-column");
    if (form && results && results.getBoundingClientRect().top >= form.getBoundingClientRect().bottom) {
      // At once: a smooth scroll is dropped when the results change size meanwhile.
      setTimeout(() => results.scrollIntoView({ block: "start" }), 100);
    }
  });
  // The tab's title follows the running job ("[7/24] Z-Image-Turbo") and says when it is done,
  // so that a job in a background tab can be watched from the tab bar.
  const base = document.title || "Z-Image-Turbo";
  let running = false;
  setInterval(() => {
    const gallery = document.querySelector("#gallery");
    const shown = gallery ? gallery.innerText : "";
    // The progress line in English or Chinese (webui/words.py: "progress", "ahead").
    const images =
      shown.match(/images? (\d+)(?:-\d+)? of (\d+), step/) || shown.match(/第 (\d+)(?:-\d+)? 张，共 (\d+) 张，第/);
    const waiting = shown.match(/(\d+) jobs? ahead of yours/) || shown.match(/前面还有 (\d+) 个任务/);
    let title = base;
    if (images) {
      title = `[${Number(images[1]) - 1}/${images[2]}] ${base}`;
      running = true;
    } else if (waiting) {
      title = `[waiting: ${waiting[1]} ahead] ${base}`;
      running = true;
    } else if (running) {
      const summary = document.querySelector("#summary")?.innerText || "";
      title = summary.trim() ? `Done · ${base}` : base;
      running = !summary.trim();
    } else if (document.title.startsWith("Done")) {
      title = document.title;
    }
    if (document.title !== title) document.title = title;
  }, 500);
}
