// Real Node clients of the shim, run by tests/test_node_clients.py: `node clients.mjs <client>` with
// SHIM_URL (the base URL, ending in /v1) and SHIM_KEY set. Each check records what the client returned
// (or the error it raised) and the script prints one JSON object; pytest asserts on it.
import OpenAI, { toFile } from "openai";
import { generateImage } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { DallEAPIWrapper } from "@langchain/openai";

const base = process.env.SHIM_URL;
const apiKey = process.env.SHIM_KEY;
const PNG_MAGIC = "89504e470d0a1a0a";

const isPng = (bytes) => Buffer.from(bytes).subarray(0, 8).toString("hex") === PNG_MAGIC;

async function fetched(url) {
  const response = await fetch(url);
  const bytes = new Uint8Array(await response.arrayBuffer());
  return { status: response.status, png: isPng(bytes) };
}

function failure(error) {
  return {
    error: error?.constructor?.name ?? String(error),
    status: error?.status ?? error?.statusCode ?? null,
    code: error?.code ?? null,
    message: String(error?.message ?? error).slice(0, 300),
  };
}

async function check(results, name, run) {
  try {
    results[name] = await run();
  } catch (error) {
    results[name] = failure(error);
  }
}

async function openaiNode(results) {
  const client = new OpenAI({ baseURL: base, apiKey, maxRetries: 0 });
  await check(results, "generate_b64", async () => {
    const r = await client.images.generate({
      model: "gpt-image-1", prompt: "[latency=0.1] a red panda", size: "1024x1024", quality: "low",
    });
    return {
      count: r.data.length, png: isPng(Buffer.from(r.data[0].b64_json, "base64")), url: r.data[0].url ?? null,
      size: r.size, total_tokens: r.usage?.total_tokens ?? null,
    };
  });
  await check(results, "generate_url", async () => {
    const r = await client.images.generate({ model: "dall-e-3", prompt: "[latency=0.1] a fox", n: 1 });
    return { count: r.data.length, b64: r.data[0].b64_json ?? null, image: await fetched(r.data[0].url) };
  });
  await check(results, "generate_n2", async () => {
    const r = await client.images.generate({
      model: "gpt-image-1", prompt: "[latency=0.1] two owls", n: 2, quality: "low", response_format: "url",
    });
    return { count: r.data.length, distinct: new Set(r.data.map((d) => d.url)).size };
  });
  await check(results, "edit_two_files", async () => {
    const source = await client.images.generate({
      model: "gpt-image-1", prompt: "[latency=0.1] a source", quality: "low",
    });
    const png = Buffer.from(source.data[0].b64_json, "base64");
    const r = await client.images.edit({
      model: "gpt-image-1",
      image: [await toFile(png, "a.png", { type: "image/png" }), await toFile(png, "b.png", { type: "image/png" })],
      prompt: "[latency=0.1] merge them",
      quality: "low",
    });
    return { count: r.data.length, png: isPng(Buffer.from(r.data[0].b64_json, "base64")) };
  });
  await check(results, "error_unknown_model", async () => {
    await client.images.generate({ model: "no-such-model", prompt: "x" });
    return { error: null };
  });
  await check(results, "error_bad_size", async () => {
    await client.images.generate({ model: "gpt-image-1", prompt: "x", size: "1000x1000" });
    return { error: null };
  });
}

async function aiSdk(results) {
  const provider = createOpenAI({ baseURL: base, apiKey });
  await check(results, "gpt_image_n2", async () => {
    const { images } = await generateImage({
      model: provider.image("gpt-image-1"), prompt: "[latency=0.1] a cat", n: 2, size: "1024x1024",
      maxRetries: 0,
    });
    return { count: images.length, png: images.every((image) => isPng(image.uint8Array)) };
  });
  await check(results, "reve_b64", async () => {
    const { image } = await generateImage({
      model: provider.image("reve2img/reve-2.0"), prompt: "a dog", size: "1792x1024", maxRetries: 0,
    });
    return { png: isPng(image.uint8Array), media_type: image.mediaType };
  });
  await check(results, "error_unknown_model", async () => {
    await generateImage({ model: provider.image("no-such-model"), prompt: "x", maxRetries: 0 });
    return { error: null };
  });
}

async function langchain(results) {
  const options = { apiKey, baseUrl: base };
  await check(results, "dalle_url", async () => {
    const url = await new DallEAPIWrapper({ ...options, model: "dall-e-3" }).invoke("[latency=0.1] a heron");
    return { image: await fetched(url) };
  });
  await check(results, "dalle_b64", async () => {
    const tool = new DallEAPIWrapper({ ...options, model: "dall-e-3", dallEResponseFormat: "b64_json" });
    const b64 = await tool.invoke("[latency=0.1] a crane");
    return { png: isPng(Buffer.from(b64, "base64")) };
  });
  await check(results, "dalle_n2", async () => {
    const tool = new DallEAPIWrapper({ ...options, model: "dall-e-2", size: "512x512", n: 2 });
    const items = await tool.invoke("[latency=0.1] two egrets");
    return { count: items.length, urls: items.map((item) => item.image_url) };
  });
}

// A 1x1 PNG: the input_reference of the video checks.
const DOT_PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==", "base64",
);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function finished(client, id) {
  const progress = [];
  for (let i = 0; i < 300; i++) {
    const video = await client.videos.retrieve(id);
    progress.push(video.progress);
    if (video.status === "completed" || video.status === "failed") return { video, progress };
    await sleep(100);
  }
  throw new Error(`video ${id} never finished`);
}

// openai-node's videos resource (it has no createAndPoll: polling is the caller's, as in its README).
async function videos(results) {
  const client = new OpenAI({ baseURL: base, apiKey, maxRetries: 0 });
  let first = null;
  await check(results, "create_poll_download", async () => {
    const created = await client.videos.create({ prompt: "[latency=0.3] a node fox", size: "1280x720", seconds: "4" });
    const { video, progress } = await finished(client, created.id);
    first = video;
    const response = await client.videos.downloadContent(video.id);
    const bytes = Buffer.from(await response.arrayBuffer());
    return {
      created: { object: created.object, status: created.status, model: created.model },
      status: video.status, seconds: video.seconds, size: video.size, progress_last: progress.at(-1),
      content_type: response.headers.get("content-type"), mp4_b64: bytes.toString("base64"),
    };
  });
  await check(results, "upload_reference", async () => {
    const created = await client.videos.create({
      prompt: "[latency=0.2] animate the dot", input_reference: await toFile(DOT_PNG, "dot.png", { type: "image/png" }),
    });
    return { status: (await finished(client, created.id)).video.status };
  });
  await check(results, "url_reference", async () => {
    const created = await client.videos.create({
      prompt: "[latency=0.2] from a data url", input_reference: { image_url: `data:image/png;base64,${DOT_PNG.toString("base64")}` },
    });
    return { status: (await finished(client, created.id)).video.status };
  });
  await check(results, "remix", async () => {
    const remix = await client.videos.remix(first.id, { prompt: "at dusk" });
    const { video } = await finished(client, remix.id);
    return { status: video.status, remixed_from: video.remixed_from_video_id === first.id, prompt: video.prompt };
  });
  await check(results, "list", async () => {
    const ids = [];
    for await (const video of client.videos.list({ limit: 1, order: "asc" })) ids.push(video.id);
    const page = await client.videos.list({ limit: 1 });
    return { count: ids.length, first_is_oldest: ids[0] === first.id, has_more: page.has_more };
  });
  await check(results, "delete", async () => {
    const deleted = await client.videos.delete(first.id);
    let after = null;
    try {
      await client.videos.retrieve(first.id);
    } catch (error) {
      after = failure(error).error;
    }
    return { deleted: deleted.deleted, object: deleted.object, after };
  });
  await check(results, "error_bad_seconds", async () => {
    await client.videos.create({ prompt: "x", seconds: "forty" });
    return { error: null };
  });
}

const clients = { openai: openaiNode, "ai-sdk": aiSdk, langchain, videos };
const which = process.argv[2];
if (!clients[which] || !base || !apiKey) {
  console.error(`usage: SHIM_URL=... SHIM_KEY=... node clients.mjs ${Object.keys(clients).join("|")}`);
  process.exit(2);
}
const results = {};
await clients[which](results);
console.log(JSON.stringify(results));
