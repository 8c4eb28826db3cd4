// By hand, against a running `shim sandbox`: npm install openai ai @ai-sdk/openai && SHIM_URL=http://127.0.0.1:8000/v1 node check.mjs
// (Node is not on CI machines, so this is not part of the pytest suite.)
import OpenAI, { toFile } from "openai";
import { experimental_generateImage as generateImage } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
const base = process.env.SHIM_URL ?? "http://127.0.0.1:8000/v1";
const client = new OpenAI({ baseURL: base, apiKey: "sk-node" });
const r = await client.images.generate({ model: "gpt-image-1", prompt: "a red panda", size: "1024x1024", quality: "low" });
console.log("node sdk b64 length", r.data[0].b64_json.length, r.size);
const r2 = await client.images.generate({ model: "dall-e-3", prompt: "a fox", n: 1 });
console.log("node sdk url", r2.data[0].url);
const png = Buffer.from(r.data[0].b64_json, "base64");
const e = await client.images.edit({ model: "gpt-image-1", image: [await toFile(png, "a.png", { type: "image/png" }), await toFile(png, "b.png", { type: "image/png" })], prompt: "edit" });
console.log("node sdk edit", e.data.length, !!e.data[0].b64_json);
try { await client.images.generate({ model: "nope", prompt: "x" }); } catch (err) { console.log("node sdk error", err.status, err.code, err.constructor.name); }
const provider = createOpenAI({ baseURL: base, apiKey: "sk-ai" });
const { images } = await generateImage({ model: provider.image("gpt-image-1"), prompt: "a cat", n: 2, size: "1024x1024" });
console.log("ai sdk images", images.length, images[0].uint8Array.length);
const { image } = await generateImage({ model: provider.image("reve2img/reve-2.0"), prompt: "a dog", size: "1792x1024" });
console.log("ai sdk reve", image.uint8Array.length);
